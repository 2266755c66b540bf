"""Calibration: does a confidence of 0.9 mean right 90% of the time?

Expected calibration error (Naeini et al., 2015; Guo et al., 2017), streaming and exact
over the whole evaluation: predictions (pixels for segmentation, images for
classification) fall into `num_bins` equal-width bins of their confidence (the top
class's probability; bin b holds confidences in [b/B, (b+1)/B), the last one also 1.0),
and

    ECE = sum over bins b of (n_b / n) * |accuracy_b - mean confidence_b|.

Three float64 sums per bin (count, confidence, correct) are the whole state, so the value
does not depend on the batch size. The reliability diagram (accuracy per bin against the
diagonal of perfect calibration) goes to TensorBoard's images as a bytes metric, like the
panels (`metrics/summaries.py`).
"""

import tensorflow as tf

from metrics.streaming import histogram, safe_divide, streaming_totals

NUM_BINS = 15


def calibration_bins(confidence, correct, num_bins: int = NUM_BINS, mask=None, name="calibration"):
    """`({"count", "confidence", "correct"}: float64 [num_bins] running sums, update_op)`.

    Two bincounts per batch: one over `2 * bin + correct` (counts and hits per bin), one
    over the bin weighted by the confidence; masked entries go to a bin past the end,
    which the histogram drops (no gather of the kept entries).
    """
    confidence = tf.reshape(tf.cast(confidence, tf.float64), [-1])
    correct = tf.reshape(tf.cast(correct, tf.int32), [-1])
    bins = tf.clip_by_value(tf.cast(tf.floor(confidence * num_bins), tf.int32), 0, num_bins - 1)
    if mask is not None:
        bins = tf.where(tf.reshape(tf.cast(mask, tf.bool), [-1]), bins, num_bins)
    hits = histogram(2 * bins + correct, 2 * num_bins, dtype=tf.float64)
    mass = histogram(bins, num_bins, weights=confidence, dtype=tf.float64)
    return streaming_totals({"count": hits[0::2] + hits[1::2], "confidence": mass, "correct": hits[1::2]}, name)


def expected_calibration_error(sums):
    """ECE from the per-bin sums (NaN when nothing was counted)."""
    total = tf.reduce_sum(sums["count"])
    gap = tf.abs(sums["correct"] - sums["confidence"])  # n_b * |accuracy_b - confidence_b|.
    return safe_divide(tf.reduce_sum(gap), total)


def reliability_diagram(sums, size: int = 128):
    """uint8 [1, size, size, 3]: per bin, a bar up to its accuracy (blue; grey where empty),
    the perfectly calibrated diagonal in red, white elsewhere. Bottom is 0, top is 1."""
    num_bins = sums["count"].shape[0]
    accuracy = safe_divide(sums["correct"], sums["count"])
    column = tf.minimum(tf.range(size) * num_bins // size, num_bins - 1)  # Bin of each pixel column.
    height = (size - 1 - tf.range(size, dtype=tf.float64)[:, None]) / (size - 1)  # 1 at the top row.
    bar_top = tf.gather(tf.where(tf.math.is_nan(accuracy), tf.zeros_like(accuracy), accuracy), column)[None, :]
    empty = tf.gather(tf.equal(sums["count"], 0), column)[None, :]
    x = (tf.range(size, dtype=tf.float64)[None, :] + 0.5) / size
    diagonal = tf.abs(height - x) < 1.0 / size
    white, blue = tf.constant([255, 255, 255], tf.uint8), tf.constant([60, 110, 200], tf.uint8)
    grey, red = tf.constant([220, 220, 220], tf.uint8), tf.constant([200, 40, 40], tf.uint8)
    in_bar = tf.logical_and(height <= bar_top, tf.logical_not(empty))
    image = tf.where(in_bar[..., None], blue, tf.broadcast_to(white, [size, size, 3]))
    image = tf.where(tf.broadcast_to(empty, [size, size])[..., None], grey, image)
    image = tf.where(diagonal[..., None], red, image)
    return image[None]


def calibration_metrics(confidence, correct, num_bins: int = NUM_BINS, mask=None, name="calibration"):
    """`{"ece": (value, update), "summary/reliability": (image summary bytes, update)}`.

    Args:
      confidence: float, the top class's probability per prediction (any shape).
      correct: bool, whether that class is the label (same shape).
      mask: optional bool (same shape): count only where True (segmentation's valid pixels).
    """
    sums, update_op = calibration_bins(confidence, correct, num_bins, mask, name)
    image = tf.compat.v1.summary.image("reliability", reliability_diagram(sums), max_outputs=1, collections=[])
    return {"ece": (expected_calibration_error(sums), update_op), "summary/reliability": (image, update_op)}
