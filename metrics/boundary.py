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

from metrics.confusion import IGNORE_LABEL
from metrics.streaming import metric_variable, nanmean, safe_divide

DILATION_RATIO = 0.02


def boundary_width(height, width, dilation_ratio: float = DILATION_RATIO) -> int:
    """The paper's d for an image of this size."""
    return max(1, int(round(dilation_ratio * math.sqrt(height * height + width * width))))


def inner_boundary(label_map, d: int):
    """bool [B, H, W]: the pixels whose (2d+1)^2 window (chessboard distance `d`) holds another
    value, the outside of the image counting as another value. For each pixel, that is
    whether it lies in its own value's mask's inner boundary region: one pass for every
    class at once (a window holds only its centre's value iff its max and min both equal it)."""
    values = tf.cast(label_map, tf.float32)[..., None]
    padded = tf.pad(values, [[0, 0], [d, d], [d, d], [0, 0]], constant_values=-1.0)  # Not a label value.
    size = 2 * d + 1

    def window_max(x):  # The square is separable: rows, then columns; 2(2d+1) per pixel.
        return tf.nn.max_pool2d(tf.nn.max_pool2d(x, [size, 1], 1, "VALID"), [1, size], 1, "VALID")

    highest, lowest = window_max(padded), -window_max(-padded)
    return tf.logical_or(tf.not_equal(highest, values), tf.not_equal(lowest, values))[..., 0]


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
    truth_band, predicted_band = inner_boundary(labels, d), inner_boundary(predictions, d)

    def per_class(values, where):  # Pixels per class value in [0, C); others fall off the end.
        kept = tf.boolean_mask(values, where)
        return tf.cast(tf.math.bincount(kept, minlength=num_classes, maxlength=num_classes), tf.float64)

    truth = per_class(labels, truth_band)  # |G_d & G| per class (the ignore label falls off).
    predicted = per_class(predictions, predicted_band)  # |P_d & P| per class.
    both = per_class(labels, truth_band & predicted_band & tf.equal(labels, predictions))
    with tf.compat.v1.variable_scope(None, name):
        intersection = metric_variable([num_classes], tf.float64, "intersection")
        union = metric_variable([num_classes], tf.float64, "union")
        update_op = tf.group(intersection.assign_add(both), union.assign_add(truth + predicted - both))
    per_class = safe_divide(intersection.read_value(), union.read_value())
    names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
    ops = {"boundary_iou": (nanmean(per_class), update_op)}
    for i, class_name in enumerate(names):
        ops[f"boundary_iou/{class_name}"] = (per_class[i], update_op)
    return ops
