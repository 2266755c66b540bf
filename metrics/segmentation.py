"""Segmentation metrics, all derived from one streaming confusion matrix.

Convention for absent classes: a class that appears neither in the ground truth
nor in the predictions of the whole evaluation set has an undefined IoU and Dice:
its per-class value is NaN and it is left out of every mean. It is never counted
as 0 or 1.

Usage in a `model_fn`:

    eval_metric_ops = segmentation_metrics(
        labels=mask, predictions=classes, num_classes=4,
        class_names=["background", "circle", "square", "triangle"])
    # {"mean_iou": (value, update_op), "iou/circle": (...), ...}
"""

import tensorflow as tf

from metrics.streaming import metric_variable, nanmean, safe_divide

IGNORE_LABEL = 255


def streaming_confusion_matrix(labels, predictions, num_classes: int, ignore_label: int = IGNORE_LABEL, name=None):
    """A `[num_classes, num_classes]` int64 confusion matrix summed over all updates.

    Rows are ground truth, columns predictions. Pixels labelled `ignore_label` are
    not counted. One `tf.math.bincount` over `label * C + prediction` per batch: an
    order of magnitude faster on CPU than `tf.math.confusion_matrix`'s scatter.

    Args:
      labels: int tensor of class ids, any shape.
      predictions: int tensor of predicted class ids, same shape.
      num_classes: C.
      ignore_label: label value to skip.
      name: variable scope name.

    Returns:
      `(confusion_matrix, update_op)`.

    Raises:
      tf.errors.InvalidArgumentError at run time, naming the value, when a label
      (other than `ignore_label`) or a prediction is outside [0, C).
    """
    with tf.compat.v1.variable_scope(name, "confusion_matrix"):
        total = metric_variable([num_classes, num_classes], tf.int64, "total")
        labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
        predictions = tf.reshape(tf.cast(predictions, tf.int32), [-1])
        valid = tf.not_equal(labels, ignore_label)
        bad_label = valid & ((labels < 0) | (labels >= num_classes))
        bad_prediction = (predictions < 0) | (predictions >= num_classes)
        checks = [
            tf.debugging.Assert(
                tf.logical_not(tf.reduce_any(bad_label)),
                [
                    f"label outside [0, {num_classes}) and not the ignore label {ignore_label}:",
                    tf.boolean_mask(labels, bad_label)[:1],
                ],
                name="check_labels",
            ),
            tf.debugging.Assert(
                tf.logical_not(tf.reduce_any(bad_prediction)),
                [f"prediction outside [0, {num_classes}):", tf.boolean_mask(predictions, bad_prediction)[:1]],
                name="check_predictions",
            ),
        ]
        # Ignored pixels go to one extra bin, dropped below: cheaper than a boolean_mask.
        cells = num_classes * num_classes
        ids = tf.where(valid, labels * num_classes + predictions, cells)
        with tf.control_dependencies(checks):
            counts = tf.math.bincount(ids, minlength=cells + 1, maxlength=cells + 1, dtype=tf.int64)
        update_op = total.assign_add(tf.reshape(counts[:cells], [num_classes, num_classes]))
        return tf.identity(total.read_value(), name="value"), update_op


def confusion_derived(confusion):
    """Per-class and summary values from a confusion matrix (float64 tensors)."""
    confusion = tf.cast(confusion, tf.float64)
    true_positive = tf.linalg.diag_part(confusion)
    ground_truth = tf.reduce_sum(confusion, axis=1)
    predicted = tf.reduce_sum(confusion, axis=0)
    union = ground_truth + predicted - true_positive
    iou = safe_divide(true_positive, union)
    dice = safe_divide(2 * true_positive, ground_truth + predicted)
    class_accuracy = safe_divide(true_positive, ground_truth)
    total = tf.reduce_sum(confusion)
    frequency = safe_divide(ground_truth, total)
    present = tf.math.is_finite(iou)
    return {
        "iou": iou,
        "dice": dice,
        "class_accuracy": class_accuracy,
        "mean_iou": nanmean(iou),
        "median_iou": _nanmedian(iou),
        "frequency_weighted_iou": safe_divide(
            tf.reduce_sum(tf.where(present, frequency * iou, tf.zeros_like(iou))),
            tf.reduce_sum(tf.where(present, frequency, tf.zeros_like(frequency))),
        ),
        "mean_dice": nanmean(dice),
        "pixel_accuracy": safe_divide(tf.reduce_sum(true_positive), total),
        "mean_class_accuracy": nanmean(class_accuracy),
    }


def _nanmedian(values):
    """Median of the finite entries (mean of the middle two for an even count); NaN if none."""
    finite = tf.boolean_mask(values, tf.math.is_finite(values))
    ordered = tf.sort(finite)
    count = tf.size(ordered)
    low = tf.gather(ordered, tf.maximum((count - 1) // 2, 0))
    high = tf.gather(ordered, tf.maximum(count // 2, 0))
    nan = tf.constant(float("nan"), values.dtype)
    return tf.cond(count > 0, lambda: (low + high) / 2, lambda: nan)


def segmentation_metrics(labels, predictions, num_classes: int, class_names=None, ignore_label: int = IGNORE_LABEL):
    """All segmentation metrics, sharing one confusion-matrix update.

    Args:
      labels: int [B, H, W] ground truth (`ignore_label` pixels skipped).
      predictions: int [B, H, W] predicted classes.
      num_classes: C.
      class_names: C names for the per-class scalars (default: class ids).
      ignore_label: label value to skip.

    Returns:
      `{name: (value, update_op)}` with `mean_iou`, `median_iou`,
      `frequency_weighted_iou`, `mean_dice`, `pixel_accuracy`,
      `mean_class_accuracy`, `iou/<class>`, `dice/<class>`, and
      `confusion_matrix` (the int64 [C, C] matrix itself).
    """
    class_names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for {num_classes} classes: {class_names}")
    confusion, update_op = streaming_confusion_matrix(labels, predictions, num_classes, ignore_label)
    derived = confusion_derived(confusion)
    ops = {"confusion_matrix": (confusion, update_op)}
    for key in ("mean_iou", "median_iou", "frequency_weighted_iou", "mean_dice", "pixel_accuracy", "mean_class_accuracy"):
        ops[key] = (derived[key], update_op)
    for key in ("iou", "dice"):
        for class_id, class_name in enumerate(class_names):
            ops[f"{key}/{class_name}"] = (derived[key][class_id], update_op)
    return ops
