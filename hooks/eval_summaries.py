"""TensorBoard summaries written by an evaluation, at the evaluated checkpoint's step.

Estimator's `evaluate()` writes an `eval_metric_ops` value that is a serialized
`Summary` proto (bytes) into the eval event file at the checkpoint's global step
(renaming each tag to `<metric name>/<i>`). That is the clean way to put images and
text into TensorBoard from an evaluation, so these builders return
`{name: (serialized_summary, update_op)}` entries to merge into `eval_metric_ops`:

- `subset_image_summaries`: one panel (image | ground truth | prediction | errors)
  per chosen example index, tag `images/index_<i>`. The chosen frames are picked
  in the graph (a hash-table lookup on the `index` feature), so no other frame is
  copied out, and each index appears exactly once per evaluation whatever the
  batch size.
- `per_example_scores`: every evaluated example's index and mean IoU (for the
  per-example CSV and `evaluate.py --worst_k`).
- `confusion_summaries`: the row-normalised confusion matrix as an image and the
  per-class table as text.
"""

import numpy as np
import tensorflow as tf

from hooks.palette import mask_palette
from metrics.streaming import metric_variable, streaming_concat

IGNORE_LABEL = 255
ERROR_COLOUR = (255, 40, 40)
CORRECT_COLOUR = (30, 30, 30)


def _colourise(mask):
    return tf.gather(tf.constant(mask_palette()), tf.clip_by_value(tf.cast(mask, tf.int32), 0, 255))


def make_panels(images, labels, predictions):
    """Panels uint8 [N, H, 4W, 3]: image | ground truth | prediction | error map.

    Error map: red where the prediction is wrong, dark where right, white where
    the label is ignored.
    """
    labels = tf.cast(labels, tf.int32)
    predictions = tf.cast(predictions, tf.int32)
    ignored = tf.equal(labels, IGNORE_LABEL)[..., None]
    wrong = tf.not_equal(labels, predictions)[..., None]
    errors = tf.where(wrong, tf.constant(ERROR_COLOUR, tf.uint8), tf.constant(CORRECT_COLOUR, tf.uint8))
    errors = tf.where(ignored, tf.constant((255, 255, 255), tf.uint8), errors)
    return tf.concat([tf.cast(images, tf.uint8), _colourise(labels), _colourise(predictions), errors], axis=2)


def index_tag(index: int) -> str:
    """The metric name (and TensorBoard tag prefix) of an example's panel."""
    return f"images/index_{int(index):05d}"


def subset_image_summaries(indices, images, labels, predictions, chosen):
    """Image summaries for the examples whose index is in `chosen`.

    Args:
      indices: int64 [B] example indices (the `index` feature).
      images: uint8 [B, H, W, 3]; labels, predictions: int [B, H, W].
      chosen: the example indices to show (static, a few dozen at most).

    Returns:
      `{images/index_<i>: (serialized Summary or b"" if not seen, update_op)}`.
    """
    chosen = sorted({int(i) for i in chosen})
    if not chosen:
        return {}
    height, width = images.shape[1], images.shape[2]
    with tf.compat.v1.variable_scope(None, "subset_images"):
        table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(chosen, tf.int64), tf.range(len(chosen), dtype=tf.int64), tf.int64, tf.int64
            ),
            default_value=-1,
        )
        store = metric_variable([len(chosen), height, 4 * width, 3], tf.uint8, "panels")
        seen = metric_variable([len(chosen)], tf.int32, "seen")
        slots = table.lookup(tf.cast(indices, tf.int64))
        picked = tf.where(slots >= 0)[:, 0]  # Positions in the batch of the chosen frames only.
        slots = tf.gather(slots, picked)
        panels = make_panels(tf.gather(images, picked), tf.gather(labels, picked), tf.gather(predictions, picked))
        update_op = tf.group(
            store.scatter_update(tf.IndexedSlices(panels, slots)),
            seen.scatter_update(tf.IndexedSlices(tf.ones_like(slots, tf.int32), slots)),
        )
        ops = {}
        for slot, index in enumerate(chosen):
            summary = tf.compat.v1.summary.image(
                f"index_{index:05d}", store[slot : slot + 1], max_outputs=1, collections=[]
            )
            ops[index_tag(index)] = (tf.where(seen[slot] > 0, summary, tf.constant(b"")), update_op)
        return ops


def per_example_mean_iou(labels, predictions, num_classes: int, ignore_label: int = IGNORE_LABEL):
    """Mean IoU of each example, over the classes present in its labels or predictions.

    One bincount over `example * C * C + label * C + prediction` per batch.

    Returns:
      float64 [B]; NaN for an example whose pixels are all ignored.
    """
    labels = tf.cast(labels, tf.int32)
    predictions = tf.cast(predictions, tf.int32)
    batch = tf.shape(labels)[0]
    cells = num_classes * num_classes
    example = tf.reshape(tf.range(batch), [-1, 1, 1])
    valid = tf.not_equal(labels, ignore_label)
    ids = tf.where(valid, example * cells + labels * num_classes + predictions, batch * cells)
    counts = tf.math.bincount(tf.reshape(ids, [-1]), minlength=batch * cells + 1, maxlength=batch * cells + 1)
    confusion = tf.cast(tf.reshape(counts[:-1], [batch, num_classes, num_classes]), tf.float64)
    true_positive = tf.linalg.diag_part(confusion)
    union = tf.reduce_sum(confusion, 2) + tf.reduce_sum(confusion, 1) - true_positive
    present = union > 0
    iou = true_positive / tf.where(present, union, 1.0)
    count = tf.reduce_sum(tf.cast(present, tf.float64), 1)
    total = tf.reduce_sum(tf.where(present, iou, 0.0), 1)
    return tf.where(count > 0, total / tf.maximum(count, 1.0), np.nan)


def per_example_scores(indices, labels, predictions, num_classes: int, ignore_label: int = IGNORE_LABEL):
    """Every evaluated example's index and mean IoU, collected over the evaluation.

    Returns:
      `{"per_example/index": (float64 [N], update), "per_example/mean_iou": (...)}`.
    """
    scores = per_example_mean_iou(labels, predictions, num_classes, ignore_label)
    all_indices, index_update = streaming_concat(indices, "per_example_index")
    all_scores, score_update = streaming_concat(scores, "per_example_mean_iou")
    update_op = tf.group(index_update, score_update)
    return {"per_example/index": (all_indices, update_op), "per_example/mean_iou": (all_scores, update_op)}


def confusion_summaries(confusion, class_names, iou, dice, update_op, cell_pixels: int = 16):
    """The confusion matrix as an image and the per-class table as text.

    Args:
      confusion: int [C, C] running confusion matrix (rows = ground truth).
      class_names: C names.
      iou, dice: float [C] per-class values derived from `confusion`.
      update_op: the confusion matrix's update op.
      cell_pixels: side of one matrix cell in the image.

    Returns:
      `{"summary/confusion_matrix": (bytes, update_op), "summary/per_class": (bytes, update_op)}`.
    """
    confusion = tf.cast(confusion, tf.float64)
    rows = tf.reduce_sum(confusion, axis=1, keepdims=True)
    normalised = confusion / tf.maximum(rows, 1.0)
    # White (0) to dark blue (1), one colour channel ramp each.
    ramp = tf.stack([1.0 - 0.9 * normalised, 1.0 - 0.7 * normalised, 1.0 - 0.2 * normalised], axis=-1)
    image = tf.cast(tf.round(255.0 * ramp), tf.uint8)
    image = tf.repeat(tf.repeat(image, cell_pixels, axis=0), cell_pixels, axis=1)[None]
    matrix_summary = tf.compat.v1.summary.image("confusion_matrix", image, max_outputs=1, collections=[])
    header = "| class | IoU | Dice | pixels (truth) |\n|---|---|---|---|\n"
    cells = [
        tf.constant([f"| {name} |" for name in class_names]),
        tf.strings.as_string(iou, precision=4),
        tf.constant("|"),
        tf.strings.as_string(dice, precision=4),
        tf.constant("|"),
        tf.strings.as_string(tf.cast(rows[:, 0], tf.int64)),
        tf.constant("|"),
    ]
    lines = tf.strings.join([tf.broadcast_to(c, [len(class_names)]) for c in cells], separator=" ")
    table = tf.strings.join([header, tf.strings.reduce_join(lines, separator="\n")])
    text_summary = tf.compat.v1.summary.text("per_class", table, collections=[])
    return {"summary/confusion_matrix": (matrix_summary, update_op), "summary/per_class": (text_summary, update_op)}
