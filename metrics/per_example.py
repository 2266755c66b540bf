"""Each example's own confusion matrix and mean IoU, inside one evaluation batch."""

import tensorflow as tf

from common.constants import IGNORE_LABEL
from metrics.confusion import iou_and_dice
from metrics.streaming import histogram, nanmean


def per_example_confusion(labels, predictions, num_classes: int, ignore_label: int = IGNORE_LABEL):
    """Each example's confusion matrix over its non-ignored pixels: int32 [B, C, C] (rows =
    ground truth). One bincount over `example * C * C + label * C + prediction` per batch."""
    labels = tf.cast(labels, tf.int32)
    predictions = tf.cast(predictions, tf.int32)
    batch = tf.shape(labels)[0]
    cells = num_classes * num_classes
    example = tf.reshape(tf.range(batch), [-1] + [1] * (labels.shape.rank - 1))
    valid = tf.not_equal(labels, ignore_label)
    ids = tf.where(valid, example * cells + labels * num_classes + predictions, batch * cells)
    counts = histogram(ids, batch * cells, dtype=tf.int32)
    return tf.reshape(counts, [batch, num_classes, num_classes])


def per_example_mean_iou(labels, predictions, num_classes: int, ignore_label: int = IGNORE_LABEL):
    """Mean IoU of each example, over the classes present in its labels or predictions.

    Returns:
      float64 [B]; NaN for an example whose pixels are all ignored.
    """
    iou, _ = iou_and_dice(per_example_confusion(labels, predictions, num_classes, ignore_label))
    return nanmean(iou, axis=-1)
