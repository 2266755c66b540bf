"""Boundary IoU (Cheng, Girshick, Dollar, Berg, Kirillov: "Boundary IoU: Improving
Object-Centric Image Segmentation Evaluation", CVPR 2021), streaming and exact.

Mask IoU barely moves when a boundary is wrong, because the interior dominates; Boundary
IoU counts only the pixels near each mask's contour. For a class c with ground-truth
mask G and predicted mask P:

    Boundary IoU = |(G_d & G) & (P_d & P)| / |(G_d & G) | (P_d & P)|

where X_d & X, the inner boundary region of X, is the pixels of X within distance d of
its contour, i.e. X minus X eroded d times by a 3x3 square (the authors' reference
implementation, boundary-iou-api's `mask_to_boundary`: `cv2.erode` with a 3x3 kernel
and `d` iterations after padding the mask with a 1-pixel border of zeros, so the image
border is a contour too). `d` is `dilation_ratio` (0.02) times the image diagonal,
rounded, at least 1 (of the batch's size: images of different sizes padded to one size
for evaluation share that size's `d`).

For semantic segmentation the intersections and unions are summed per class over the
whole evaluation, as the confusion matrix is for mean IoU, then divided: exact and
independent of the batch size. Pixels labelled `ignore_label` are in neither mask, the
prediction's included, before the boundaries are taken: a prediction right on every
pixel that counts scores 1, even where an ignored band (VOC's, the synthetic set's)
separates an object from its background. Padding added to batch images of different
sizes is ignored too. A class in neither the labels nor the predictions of
the whole evaluation is NaN and left out of the mean, as for mean IoU.
"""

import math

import tensorflow as tf

from common.constants import IGNORE_LABEL
from metrics.streaming import histogram, nanmean, safe_divide, streaming_totals

DILATION_RATIO = 0.02


def boundary_width(height, width, dilation_ratio: float = DILATION_RATIO) -> int:
    """The paper's d for an image of this size."""
    return max(1, int(round(dilation_ratio * math.sqrt(height * height + width * width))))


def inner_boundaries(label_maps, d: int):
    """bool [B, H, W, K] for K int label maps stacked on the last axis: the pixels whose
    (2d+1)^2 window (chessboard distance `d`) holds another value, the outside of the image
    counting as another value; for each pixel, whether it lies in its own value's mask's
    inner boundary region, for every class at once.

    How: the pixels with an 8-neighbour of another value (or the image border) are the
    edges; a pixel has another value within distance d iff an edge lies within d - 1 of it
    (walking from it towards that value, the last pixel of its own is an edge). So one
    dilation of the edges by d - 1, a separable max over rows then columns, for all K maps
    at once.
    """
    values = tf.pad(tf.cast(label_maps, tf.int32), [[0, 0], [1, 1], [1, 1], [0, 0]], constant_values=-1)
    height, width = tf.shape(label_maps)[1], tf.shape(label_maps)[2]
    centre = values[:, 1:-1, 1:-1]
    edges = tf.zeros_like(centre, tf.bool)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            if (dy, dx) != (1, 1):
                edges |= tf.not_equal(values[:, dy : dy + height, dx : dx + width], centre)
    if d == 1:
        return edges
    size = 2 * (d - 1) + 1
    near = tf.nn.max_pool2d(tf.cast(edges, tf.float32), [size, 1], 1, "SAME")
    return tf.nn.max_pool2d(near, [1, size], 1, "SAME") > 0


def boundary_iou(labels, predictions, num_classes: int, class_names=None, ignore_label=IGNORE_LABEL,
                 dilation_ratio: float = DILATION_RATIO, name="boundary_iou"):  # fmt: skip
    """`{"boundary_iou": (mean over classes, update), "boundary_iou/<class>": ...}`.

    Args:
      labels: int [B, H, W] (H and W static: `d` comes from them).
      predictions: int [B, H, W].
    """
    height, width = labels.shape[1], labels.shape[2]
    if height is None or width is None:
        raise ValueError("boundary_iou needs a static image size (the boundary width comes from it)")
    d = boundary_width(height, width, dilation_ratio)
    labels, predictions = tf.cast(labels, tf.int32), tf.cast(predictions, tf.int32)
    valid = tf.not_equal(labels, ignore_label)
    # Ignored pixels are in neither mask: there the prediction becomes "no class" (C) too.
    predictions = tf.where(valid, predictions, num_classes)
    bands = inner_boundaries(tf.stack([labels, predictions], axis=-1), d)
    truth_band, predicted_band = bands[..., 0], bands[..., 1]

    def per_class(values, where):  # Pixels per class value in [0, C); others fall off the end.
        return histogram(tf.where(where, values, num_classes), num_classes, dtype=tf.float64)

    truth = per_class(labels, truth_band)  # |G_d & G| per class (the ignore label falls off).
    predicted = per_class(predictions, predicted_band)  # |P_d & P| per class.
    both = per_class(labels, truth_band & predicted_band & tf.equal(labels, predictions))
    sums, update_op = streaming_totals({"intersection": both, "union": truth + predicted - both}, name)
    per_class = safe_divide(sums["intersection"], sums["union"])
    names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
    ops = {"boundary_iou": (nanmean(per_class), update_op)}
    for i, class_name in enumerate(names):
        ops[f"boundary_iou/{class_name}"] = (per_class[i], update_op)
    return ops
