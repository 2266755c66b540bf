"""Segmentation metrics, all derived from one streaming confusion matrix.

Convention for absent classes: a class that appears neither in the ground truth
nor in the predictions of the whole evaluation set has an undefined IoU and Dice:
its per-class value is NaN and it is left out of every mean. It is never counted
as 0 or 1. (A class that occurs but is never predicted has IoU 0, and counts.)

Usage in a `model_fn`:

    eval_metric_ops = segmentation_metrics(
        labels=mask, predictions=classes, num_classes=4,
        class_names=["background", "circle", "square", "triangle"])
    # {"mean_iou": (value, update_op), "iou/circle": (...), ...}
"""

import tensorflow as tf

from common.constants import IGNORE_LABEL
from metrics.confusion import fbeta_name, iou_and_dice, per_class_rates, streaming_confusion_matrix
from metrics.streaming import nanmean, safe_divide

SUMMARY_KEYS = (
    "mean_iou",
    "median_iou",
    "frequency_weighted_iou",
    "mean_dice",
    "pixel_accuracy",
    "mean_class_accuracy",
)


def nanmedian(values):
    """Median of the finite entries (mean of the middle two for an even count); NaN if none."""
    finite = tf.boolean_mask(values, tf.math.is_finite(values))
    nan = tf.constant(float("nan"), values.dtype)
    # A NaN pad keeps the gathers in range when no value is finite (sort puts NaN last).
    ordered = tf.sort(tf.concat([finite, [nan]], 0))
    count = tf.size(finite)
    low = tf.gather(ordered, tf.maximum((count - 1) // 2, 0))
    high = tf.gather(ordered, count // 2)
    return tf.where(count > 0, (low + high) / 2, nan)


def confusion_derived(confusion):
    """Per-class and summary values from a confusion matrix (float64 tensors)."""
    iou, dice = iou_and_dice(confusion)
    confusion = tf.cast(confusion, tf.float64)
    true_positive = tf.linalg.diag_part(confusion)
    ground_truth = tf.reduce_sum(confusion, axis=1)
    total = tf.reduce_sum(confusion)
    present = tf.math.is_finite(iou)
    zeros = tf.zeros_like(iou)
    return {
        "iou": iou,
        "dice": dice,
        "class_accuracy": safe_divide(true_positive, ground_truth),
        "mean_iou": nanmean(iou),
        "median_iou": nanmedian(iou),
        "frequency_weighted_iou": safe_divide(
            tf.reduce_sum(tf.where(present, ground_truth * iou, zeros)),
            tf.reduce_sum(tf.where(present, ground_truth, zeros)),
        ),
        "mean_dice": nanmean(dice),
        "pixel_accuracy": safe_divide(tf.reduce_sum(true_positive), total),
        "mean_class_accuracy": nanmean(safe_divide(true_positive, ground_truth)),
    }


def foreground_fbeta(confusion, background_class: int = 0, beta: float = 1.0):
    """F-beta of "any foreground class" against background, from the confusion matrix.

    A foreground pixel predicted as another foreground class still counts as a
    foreground hit: this measures detection, not classification.
    """
    confusion = tf.cast(confusion, tf.float64)
    is_foreground = tf.not_equal(tf.range(tf.shape(confusion)[0]), background_class)
    fg = tf.cast(is_foreground, tf.float64)
    bg = 1.0 - fg
    true_positive = tf.reduce_sum(confusion * fg[:, None] * fg[None, :])
    false_negative = tf.reduce_sum(confusion * fg[:, None] * bg[None, :])
    false_positive = tf.reduce_sum(confusion * bg[:, None] * fg[None, :])
    b2 = beta * beta
    return safe_divide((1 + b2) * true_positive, (1 + b2) * true_positive + b2 * false_negative + false_positive)


def segmentation_metrics(
    labels,
    predictions,
    num_classes: int,
    class_names=None,
    ignore_label: int = IGNORE_LABEL,
    background_class=0,
    beta: float = 1.0,
):
    """All segmentation metrics, sharing one confusion-matrix update.

    Args:
      labels: int [B, H, W] ground truth (`ignore_label` pixels skipped).
      predictions: int [B, H, W] predicted classes.
      num_classes: C.
      class_names: C names for the per-class scalars (default: class ids).
      ignore_label: label value to skip.
      background_class: class id of the background for `foreground_f{beta}`;
        None to leave that metric out.
      beta: the beta of the foreground F-beta.

    Returns:
      `{name: (value, update_op)}` with `mean_iou`, `median_iou`,
      `frequency_weighted_iou`, `mean_dice`, `pixel_accuracy`,
      `mean_class_accuracy`, `foreground_f1` (for beta 1), `iou/<class>`,
      `dice/<class>`, and `confusion_matrix` (the int64 [C, C] matrix itself).
    """
    class_names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for {num_classes} classes: {class_names}")
    confusion, update_op = streaming_confusion_matrix(labels, predictions, num_classes, ignore_label)
    derived = confusion_derived(confusion)
    ops = {"confusion_matrix": (confusion, update_op)}
    for key in SUMMARY_KEYS:
        ops[key] = (derived[key], update_op)
    if background_class is not None:
        ops[f"foreground_{fbeta_name(beta)}"] = (foreground_fbeta(confusion, background_class, beta), update_op)
    for key in ("iou", "dice"):
        for class_id, class_name in enumerate(class_names):
            ops[f"{key}/{class_name}"] = (derived[key][class_id], update_op)
    return ops


__all__ = ["segmentation_metrics", "streaming_confusion_matrix", "confusion_derived", "per_class_rates"]
