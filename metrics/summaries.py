"""TensorBoard summaries written by an evaluation, at the evaluated checkpoint's step.

Estimator's `evaluate()` writes an `eval_metric_ops` value that is a serialized
`Summary` proto (bytes) into the eval event file at the checkpoint's global step
(renaming each tag to `<metric name>/<i>`). That is the clean way to put images and
text into TensorBoard from an evaluation (a `tf.summary` op in the EVAL graph is
never run by Estimator's evaluation loop), so these builders return
`{name: (value, update_op)}` entries to merge into `eval_metric_ops`, like any metric:

- `subset_image_summaries`: one panel per chosen example index, tag `images/index_<iiiii>`
  (zero-padded: `images/index_00003`); the task draws the panel. The chosen frames are picked in the
  graph (a hash-table lookup on the `index` feature), so no other frame is copied
  out, and each index appears exactly once per evaluation whatever the batch size.
- `per_example_values`: every evaluated example's index and the task's per-example
  values (for the per-example CSV and `evaluate.py --worst_k`).
- `confusion_summaries`: the row-normalised confusion matrix as an image and a
  per-class table as text.
"""

import tensorflow as tf

from common.constants import IGNORE_LABEL
from common.palette import mask_palette
from metrics.streaming import metric_variable, streaming_concat

ERROR_COLOUR = (255, 40, 40)
CORRECT_COLOUR = (30, 30, 30)
RIGHT_COLOUR = (40, 200, 60)
NEUTRAL_COLOUR = (128, 128, 128)


def colourise(mask):
    """Class ids [..., H, W] -> VOC colours uint8 [..., H, W, 3] (255 = ignore, white)."""
    return tf.gather(tf.constant(mask_palette()), tf.clip_by_value(tf.cast(mask, tf.int32), 0, 255))


def mask_panels(images, labels, predictions, ignore_label: int = IGNORE_LABEL):
    """Panels uint8 [N, H, 4W, 3]: image | ground truth | prediction | error map.

    Error map: red where the prediction is wrong, dark where right, white where
    the label is ignored.
    """
    labels = tf.cast(labels, tf.int32)
    predictions = tf.cast(predictions, tf.int32)
    ignored = tf.equal(labels, ignore_label)[..., None]
    wrong = tf.not_equal(labels, predictions)[..., None]
    errors = tf.where(wrong, tf.constant(ERROR_COLOUR, tf.uint8), tf.constant(CORRECT_COLOUR, tf.uint8))
    errors = tf.where(ignored, tf.constant((255, 255, 255), tf.uint8), errors)
    return tf.concat([tf.cast(images, tf.uint8), colourise(labels), colourise(predictions), errors], axis=2)


def framed(images, colours, width: int = 2):
    """Images uint8 [N, H, W, 3] with a border of `width` pixels in `colours` uint8 [N, 3]."""
    images = tf.cast(images, tf.uint8)
    shape = tf.shape(images)
    rows = tf.range(shape[1])[:, None]
    cols = tf.range(shape[2])[None, :]
    border = (rows < width) | (rows >= shape[1] - width) | (cols < width) | (cols >= shape[2] - width)
    return tf.where(border[None, :, :, None], tf.cast(colours, tf.uint8)[:, None, None, :], images)


def index_tag(index: int) -> str:
    """The metric name (and TensorBoard tag prefix) of an example's panel."""
    return f"images/index_{int(index):05d}"


def _crop_frame(value, size, padded_sizes):
    """Crops a stored frame [1, H, W, ...] to its image's own size, if it is spatial."""
    if value.shape.rank is None or value.shape.rank < 3 or value.shape[1:3] not in padded_sizes:
        return value
    return value[:, : size[0], : size[1]]


def subset_image_summaries(indices, chosen, tensors: dict, make_panels, sizes=None, filenames=None, image_sizes=None):
    """Image summaries for the examples whose index is in `chosen`, each at its own size.

    Args:
      indices: int64 [B] example indices (the `index` feature).
      chosen: the example indices to show (static, a few dozen at most).
      tensors: batch-major tensors `make_panels` needs (images, labels, ...), with
        static shapes after the batch dimension.
      make_panels: `(dict of one example's tensors, batch of 1) -> uint8 [1, h, w, 3]`.
      sizes: int32 [B, 2], each image's own size in a padded batch (the `size`
        feature), or None: the frames are shown whole. Spatial tensors (those whose
        dimensions 1 and 2 are the image's) are cropped to it, so no padding is drawn.
      filenames: string [B], the examples' file names, or None.
      image_sizes: int32 [B, 2] with an evaluation resize: the size of each
        (resized) image in `image`, drawn resized back to `sizes`.

    Returns:
      `{images/index_<i>: (serialized Summary or b"" if not seen, update_op)}`, and
      with `filenames` `{files/index_<i>: ...}`, a text naming the example's file.
    """
    chosen = sorted({int(i) for i in chosen})
    if not chosen:
        return {}
    padded_sizes = [tensors["image"].shape[1:3]]
    if "labels" in tensors and tensors["labels"].shape.rank >= 3:
        padded_sizes.append(tensors["labels"].shape[1:3])
    extra = {}
    if sizes is not None:
        extra["_size"] = tf.cast(sizes, tf.int32)
    if image_sizes is not None:
        extra["_image_size"] = tf.cast(image_sizes, tf.int32)
    if filenames is not None:
        extra["_filename"] = filenames
    frames = {**tensors, **extra}
    with tf.compat.v1.variable_scope(None, "subset_images"):
        table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(chosen, tf.int64), tf.range(len(chosen), dtype=tf.int64), tf.int64, tf.int64
            ),
            default_value=-1,
        )
        slots = table.lookup(tf.cast(indices, tf.int64))
        picked = tf.where(slots >= 0)[:, 0]  # Positions in the batch of the chosen frames only.
        slots = tf.gather(slots, picked)
        stores, updates = {}, []
        for key, value in frames.items():
            if not value.shape[1:].is_fully_defined():
                raise ValueError(f"subset_image_summaries: {key} needs a static shape, got {value.shape}")
            stores[key] = metric_variable([len(chosen), *value.shape[1:]], value.dtype, f"frame_{key.strip('_')}")
            updates.append(stores[key].scatter_update(tf.IndexedSlices(tf.gather(value, picked), slots)))
        seen = metric_variable([len(chosen)], tf.int32, "seen")
        updates.append(seen.scatter_update(tf.IndexedSlices(tf.ones_like(slots, tf.int32), slots)))
        update_op = tf.group(*updates)
        ops = {}
        for slot, index in enumerate(chosen):
            frame = {key: store[slot : slot + 1] for key, store in stores.items() if key not in extra}
            if sizes is not None:
                size = stores["_size"][slot]
                image = frame.pop("image")
                frame = {key: _crop_frame(value, size, padded_sizes) for key, value in frame.items()}
                if image_sizes is None:
                    frame["image"] = image[:, : size[0], : size[1]]
                else:  # Resized for evaluation: drawn back at the labels' size.
                    own = stores["_image_size"][slot]
                    image = tf.image.resize(image[:, : own[0], : own[1]], size, method="bilinear")
                    frame["image"] = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
            panel = tf.compat.v1.summary.image(f"index_{index:05d}", make_panels(frame), max_outputs=1, collections=[])
            ops[index_tag(index)] = (tf.where(seen[slot] > 0, panel, tf.constant(b"")), update_op)
            if filenames is not None:
                name = tf.strings.join([f"index {index}: ", stores["_filename"][slot]])
                text = tf.compat.v1.summary.text(f"index_{index:05d}", name, collections=[])
                ops[f"files/index_{index:05d}"] = (tf.where(seen[slot] > 0, text, tf.constant(b"")), update_op)
        return ops


PER_EXAMPLE_KEY_PREFIX = "per_example/"
STATISTICS_KEY_PREFIX = "statistics/"  # Per-example sufficient statistics (per_example_statistics).


def per_example_values(indices, values: dict):
    """Every evaluated example's index and values, collected over the evaluation.

    Args:
      indices: int64 [B] example indices.
      values: `{name: float [B]}`; the first is the score that ranks examples.

    Returns:
      `{"per_example/index": (float64 [N], update), "per_example/<name>": (...)}`.
    """
    collected = {"index": streaming_concat(indices, "per_example_index")}
    for name, value in values.items():
        collected[name] = streaming_concat(value, f"per_example_{name}")
    update_op = tf.group(*[update for _, update in collected.values()])
    return {PER_EXAMPLE_KEY_PREFIX + name: (value, update_op) for name, (value, _) in collected.items()}


def per_example_statistics(statistics: dict):
    """Every evaluated example's sufficient statistics (`Task.statistics`), in evaluation order
    (that of `per_example/index`), each flattened: `{"statistics/<name>": (float64 [N * k],
    update)}`; the results reshape them to [N, k] (`core/results.py`)."""
    collected = {name: streaming_concat(value, f"statistics_{name}") for name, value in statistics.items()}
    return {STATISTICS_KEY_PREFIX + name: pair for name, pair in collected.items()}


def confusion_summaries(confusion, class_names, columns: dict, update_op, cell_pixels: int = 16):
    """The confusion matrix as an image and a per-class table as text.

    Args:
      confusion: int [C, C] running confusion matrix (rows = ground truth).
      class_names: C names.
      columns: `{header: float [C]}` per-class values for the table (e.g. IoU, Dice).
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
    headers = ["class", *columns, "count (truth)"]
    header = "| " + " | ".join(headers) + " |\n|" + "---|" * len(headers) + "\n"
    cells = [tf.constant([f"| {name} |" for name in class_names])]
    for values in columns.values():
        cells += [tf.strings.as_string(values, precision=4), tf.constant("|")]
    cells += [tf.strings.as_string(tf.cast(rows[:, 0], tf.int64)), tf.constant("|")]
    lines = tf.strings.join([tf.broadcast_to(c, [len(class_names)]) for c in cells], separator=" ")
    table = tf.strings.join([header, tf.strings.reduce_join(lines, separator="\n")])
    text_summary = tf.compat.v1.summary.text("per_class", table, collections=[])
    return {"summary/confusion_matrix": (matrix_summary, update_op), "summary/per_class": (text_summary, update_op)}
