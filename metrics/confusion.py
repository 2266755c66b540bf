"""The streaming confusion matrix, and the per-class rates derived from it."""

import tensorflow as tf

from common.constants import IGNORE_LABEL
from metrics.streaming import histogram, metric_variable, safe_divide


def streaming_confusion_matrix(labels, predictions, num_classes: int, ignore_label=IGNORE_LABEL, mask=None, name=None):
    """A `[num_classes, num_classes]` int64 confusion matrix summed over all updates.

    Rows are ground truth, columns predictions. Entries labelled `ignore_label`, or
    where `mask` is False, are not counted.

    How: one histogram (`streaming.histogram`, on the CPU) over `label * C + prediction` per batch, into
    `rows * C` bins where `rows = max(C, ignore_label + 1)`. The ignore label's
    row is dropped, and the labels are validated from the histogram itself: a
    count in a row in [C, rows) names an out-of-range label value, and a total
    below the number of entries means a label outside [0, rows). No extra pass
    over the pixels for validation, so the update is about 20x faster on CPU than
    the scatter behind `tf.compat.v1.metrics.mean_iou` (`bench/metric_update.py`).

    Args:
      labels: int tensor of class ids, any shape.
      predictions: int tensor of predicted class ids, same shape.
      num_classes: C.
      ignore_label: non-negative label value to skip, or None.
      mask: optional bool tensor, same shape: count only where True.
      name: variable scope name.

    Returns:
      `(confusion_matrix, update_op)`.

    Raises:
      tf.errors.InvalidArgumentError at run time, naming the value, when a counted
      label or a prediction is outside [0, C): never silently counted or dropped.
      (A negative label stops the bincount itself: "Input arr must be non-negative".)
    """
    if ignore_label is not None and (ignore_label < 0 or ignore_label < num_classes):
        raise ValueError(f"ignore_label must be None or >= num_classes ({num_classes}), got {ignore_label}")
    rows = num_classes if ignore_label is None else max(num_classes, ignore_label + 1)
    bins = rows * num_classes
    with tf.compat.v1.variable_scope(name, "confusion_matrix"):
        total = metric_variable([num_classes, num_classes], tf.int64, "total")
        labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
        predictions = tf.reshape(tf.cast(predictions, tf.int32), [-1])
        # A negative prediction becomes a huge unsigned one: one reduction checks both ends.
        largest_prediction = tf.reduce_max(tf.bitcast(predictions, tf.uint32))
        ids = labels * num_classes + predictions
        expected = tf.size(ids, out_type=tf.int64)
        if mask is not None:
            mask = tf.reshape(tf.cast(mask, tf.bool), [-1])
            ids = tf.where(mask, ids, bins)  # Past the last bin: not counted.
            expected = tf.reduce_sum(tf.cast(mask, tf.int64))
        counts = histogram(ids, bins)  # Multithreaded on CPU; values >= bins are not counted.
        table = tf.reshape(counts, [rows, num_classes])
        row_totals = tf.reduce_sum(table, axis=1)
        row_ids = tf.range(rows)
        out_of_range_rows = (
            (row_ids >= num_classes)
            & tf.not_equal(row_ids, -1 if ignore_label is None else ignore_label)
            & (row_totals > 0)
        )
        bad_labels = tf.where(out_of_range_rows)[:3, 0]
        uncounted = expected - tf.reduce_sum(counts)
        labels_ok = tf.logical_not(tf.reduce_any(out_of_range_rows)) & tf.equal(uncounted, 0)
        # One raw Assert: tf.debugging.Assert wraps each check in a cond, a cost per batch.
        check = tf.raw_ops.Assert(
            condition=labels_ok & (largest_prediction < num_classes),
            data=[
                f"label outside [0, {num_classes}) and not the ignore label {ignore_label}:",
                bad_labels,
                f"; label outside [0, {rows}) (negative or too large), entries not counted:",
                uncounted,
                f"; prediction outside [0, {num_classes}), largest (as unsigned):",
                largest_prediction,
            ],
            summarize=3,
            name="check_values",
        )
        with tf.control_dependencies([check]):
            update_op = total.assign_add(table[:num_classes])
        return tf.identity(total.read_value(), name="value"), update_op


def iou_and_dice(confusion):
    """Per-class IoU and Dice from confusion matrices `[..., C, C]` (rows = ground truth),
    float64, NaN for a class absent from both the labels and the predictions. The one
    TensorFlow derivation: the streaming metrics, the per-example mean IoU (and, in
    numpy, `metrics.bootstrap.iou_and_dice`).

    Returns:
      `(iou, dice)`, each float64 `[..., C]`.
    """
    confusion = tf.cast(confusion, tf.float64)
    true_positive = tf.linalg.diag_part(confusion)
    ground_truth = tf.reduce_sum(confusion, axis=-1)
    predicted = tf.reduce_sum(confusion, axis=-2)
    iou = safe_divide(true_positive, ground_truth + predicted - true_positive)
    dice = safe_divide(2 * true_positive, ground_truth + predicted)
    return iou, dice


def per_class_rates(confusion, beta: float = 1.0):
    """Per-class precision, recall and F-beta (float64), NaN where undefined.

    precision_c is undefined when class c is never predicted, recall_c when it
    never occurs, and F-beta_c = (1 + b^2) TP / ((1 + b^2) TP + b^2 FN + FP) when
    it neither occurs nor is predicted (scikit-learn's `zero_division=np.nan`).
    """
    confusion = tf.cast(confusion, tf.float64)
    true_positive = tf.linalg.diag_part(confusion)
    actual = tf.reduce_sum(confusion, axis=1)
    predicted = tf.reduce_sum(confusion, axis=0)
    b2 = tf.constant(beta * beta, tf.float64)
    return {
        "precision": safe_divide(true_positive, predicted),
        "recall": safe_divide(true_positive, actual),
        "fbeta": safe_divide((1 + b2) * true_positive, b2 * actual + predicted),
    }


def fbeta_name(beta: float) -> str:
    """`f1`, `f2`, `f0.5`: the metric name for a beta."""
    return f"f{beta:g}"
