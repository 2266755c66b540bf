"""`input_fn` builders: TFRecord shards -> enumerate -> [subset filter] -> parse+decode
[-> kept in memory, training] -> crop and augment -> batch -> prefetch.

The subset filter runs on the example's index *before* parsing and decoding, so
evaluating k of N examples decodes k. Every stage is deterministic given the seed:
the training stream is a function of `(seed, position in the stream)` only.

The image is decoded here, the same way for every task; what the label is (a mask,
a class id, a regression target), how it is parsed and checked, comes from the
task object (`models/task.py`): `task.label_features()` and `task.decode_label()`.

tf.data runs its map functions through AutoGraph, which rewrites every Python function they
call, at every process's start. The template's own helpers have no Python control flow on
tensors, so they are marked `tf.autograph.experimental.do_not_convert` (about 1 s less for
each train.py or evaluate.py): here `_fit_eval_size` and `_batch_element`, data/augment.py's
ops, data/preprocess.py's `ScaleAndCrop` and `pad_to`, data/masks.py, and the tasks'
`decode_label`. What a marked function calls runs unconverted too. The functions that call a
fork's code stay converted (`_decode`, the streams' decode functions, `augment.apply`), so a
fork's own augmentation, preprocess or task is converted. A subclass of `ScaleAndCrop` that
overrides one of its methods runs unconverted (the inherited `__call__` is marked): write
`tf.cond` there, not a Python `if` on a tensor.

Reading order: `train.py` -> `core/experiment.py` -> `models/model_fn.py` ->
`models/task.py` -> this file -> next, `core/evaluation.py` (what happens to an evaluation).
"""

import dataclasses
import functools
import os
import struct
import sys

import numpy as np
import tensorflow as tf

from common.errors import DataError
from data import augment as augment_ops
from data import preprocess as preprocess_ops
from data import records_index, schema


def list_files(file_pattern) -> list:
    """Expands a glob pattern (or a list of them) into a sorted list of files.

    Raises:
      DataError: naming the pattern when nothing matches.
    """
    patterns = [file_pattern] if isinstance(file_pattern, str) else list(file_pattern)
    files = []
    for pattern in patterns:
        matched = sorted(path for path in tf.io.gfile.glob(pattern) if not records_index.is_index(path))
        if not matched:
            raise DataError(f"no files match the pattern {pattern!r}")
        files.extend(matched)
    return files


def shard_size(path: str, index=None) -> int:
    """A shard's record count: from its index (`data/records_index.py`, or `index` as read
    already), else its record headers."""
    index = index if index is not None else records_index.read(path)
    return index["count"] if index is not None else count_records(path)


def count_records(path: str) -> int:
    """Counts the records of a TFRecord file from their length headers (no payload read).

    Raises:
      DataError: naming the file and record when it is truncated.
    """
    size = os.path.getsize(path)
    count, offset = 0, 0  # A 0-byte file is an empty shard (DeepLab's converter writes some).
    with open(path, "rb") as f:
        while offset < size:
            header = f.read(12)
            if len(header) < 12:
                raise DataError(f"{path}: record {count} is truncated (a {len(header)}-byte header)")
            (length,) = struct.unpack("<Q", header[:8])
            offset += 12 + length + 4
            if offset > size:
                raise DataError(f"{path}: record {count} is truncated ({length} bytes announced, file ends first)")
            f.seek(offset)
            count += 1
    return count


def parse_subset(subset) -> np.ndarray:
    """Normalises a subset: `None`, a list of ints, `"3,17,42"` or `"@ids.txt"`.

    Returns:
      Sorted unique int64 indices, or None for "everything".

    Raises:
      DataError: on a negative or non-integer index, or an unreadable @file, naming it.
    """
    if subset is None:
        return None
    if isinstance(subset, str):
        text = subset
        if text.startswith("@"):
            try:
                with open(text[1:]) as f:
                    text = f.read()
            except OSError as error:
                raise DataError(f"subset: cannot read {text[1:]}: {error.strerror}") from None
        items = [item for item in text.replace("\n", ",").replace(" ", ",").split(",") if item]
        try:
            subset = [int(item) for item in items]
        except ValueError as error:
            raise DataError(f"subset: not an integer index: {error}") from None
    subset = list(subset)
    too_large = [index for index in subset if int(index) > np.iinfo(np.int64).max]
    if too_large:
        raise DataError(f"subset: index {too_large[0]} is too large (no split has that many examples)")
    indices = np.unique(np.asarray(subset, dtype=np.int64))
    if indices.size and indices[0] < 0:
        raise DataError(f"subset: negative index {indices[0]}")
    return indices


def _decode(index, serialized, task):
    """Parses and decodes one record: `(index, example dict)`, checked.

    The example has `image` (uint8 [H, W, 3]), its `filename`, and the task's label
    under `mask` (a per-pixel label, which spatial ops move with the image) or `label`.
    """
    spec = {**schema.image_features(), **task.label_features()}
    parsed = tf.io.parse_single_example(serialized, spec)
    image = schema.decode_image(parsed[schema.IMAGE_ENCODED])
    filename = parsed[schema.IMAGE_FILENAME]
    label, checks = task.decode_label(parsed, tf.shape(image)[:2], index, filename)
    with tf.control_dependencies(checks):
        image, label = tf.identity(image), tf.identity(label)
    return index, {"image": image, ("mask" if task.dense_labels else "label"): label, "filename": filename}


@tf.autograph.experimental.do_not_convert
def _fit_eval_size(index, example, eval_size, pad: bool, ignore_label, resize=None, image_eval_size=None):
    """Evaluation: pads the example to `eval_size` (if `pad`), keeping its own size in `size`.

    Without padding (every image of the split has the evaluation size) the image must
    be that size; with it, it must fit. Either way a misfit names the file. With
    `resize` (`(min_resize_value, max_resize_value)`), the image alone is resized into
    that range (`image_size`) and padded to `image_eval_size` (None: `eval_size`); the mask keeps its size,
    so labels are compared at the original resolution.
    """
    height, width = eval_size
    shape = tf.shape(example["image"])[:2]
    fits = tf.reduce_all(shape <= eval_size) if pad else tf.reduce_all(tf.equal(shape, eval_size))
    check = tf.debugging.Assert(
        fits,
        [f"image size does not fit the evaluation size {height}x{width}: index", index, "file", example["filename"]]
        + ["is", shape],
    )
    with tf.control_dependencies([check]):  # Before any padding reads a size.
        example = dict(example, **{key: tf.identity(example[key]) for key in ("image", "mask") if key in example})
    image_height, image_width = image_eval_size or eval_size
    if resize:
        image_size = tf.stack(preprocess_ops.resize_to_range(shape[0], shape[1], *resize))
        resized = preprocess_ops.resize({"image": example["image"]}, image_size)
        example = dict(example, image=resized["image"], image_size=tf.cast(image_size, tf.int32))
    if pad:
        example = dict(example, size=tf.cast(shape, tf.int32))
        example.update(preprocess_ops.pad_to({"image": example["image"]}, image_height, image_width, ignore_label))
        if "mask" in example:
            example.update(preprocess_ops.pad_to({"mask": example["mask"]}, height, width, ignore_label))
    example["image"] = tf.ensure_shape(example["image"], [image_height, image_width, 3])
    if "mask" in example:
        example["mask"] = tf.ensure_shape(example["mask"], [height, width])
    return index, example


@tf.autograph.experimental.do_not_convert
def _batch_element(index, example, task):
    label = example["mask" if task.dense_labels else "label"]
    features = {"image": example["image"], "index": index}
    for key in ("size", "image_size", "filename"):  # Evaluation only (training drops the file name).
        if key in example:
            features[key] = example[key]
    return features, tf.cast(label, task.label_dtype)


def _resume_position(batch_size: int, config=None, input_context=None):
    """Where the training stream resumes: `global_step * examples per step`, an int64 tensor.

    Without a strategy the global step variable is read when the iterator is
    initialised, after the checkpoint is restored (0 outside an Estimator graph).
    A synchronous strategy (`input_context` given) builds the iterator before the
    global step exists, so the step is read from the model directory's latest
    checkpoint, which is what the session restores; each step consumes a batch
    per replica.
    """
    if input_context is not None:
        latest = tf.train.latest_checkpoint(config.model_dir) if config is not None and config.model_dir else None
        step = int(tf.train.load_variable(latest, "global_step")) if latest else 0
        return tf.constant(step * batch_size * input_context.num_replicas_in_sync, tf.int64)
    global_step = tf.compat.v1.train.get_global_step()
    if global_step is None:
        return tf.constant(0, tf.int64)
    return tf.cast(global_step, tf.int64) * batch_size


def _epochs_from(records, num_records: int, start, seed: int, shuffle_buffer: int):
    """The training stream from position `start`: `(position, (index, record))` elements.

    Epoch e is `records` shuffled with the seed `(seed, e)`, at positions
    `[e * num_records, (e + 1) * num_records)`; the stream begins with epoch
    `start // num_records`, skipping `start % num_records` of its records.
    """
    first = start // num_records

    def epoch(number):
        shuffled = records.shuffle(
            shuffle_buffer, seed=tf.cast(seed, tf.int64) * 1_000_003 + number, reshuffle_each_iteration=False
        )
        positions = tf.data.Dataset.range(number * num_records, (number + 1) * num_records)
        return tf.data.Dataset.zip((positions, shuffled))

    epochs = tf.data.Dataset.range(first, np.iinfo(np.int64).max).flat_map(epoch)
    return epochs.skip(start - first * num_records)


def _training_shard(config, input_context=None):
    """`(index, count)` of this task's share of the training stream.

    Under a synchronous strategy Estimator names this input pipeline
    (`input_context`). Otherwise, from Estimator's RunConfig: the chief is shard 0
    and worker i shard i + 1 (when there is a chief), out of chief + workers;
    parameter servers and an evaluator listed in the cluster (Kubeflow's TF_CONFIG
    does) train nothing and are not counted.
    """
    if input_context is not None:
        return input_context.input_pipeline_id, input_context.num_input_pipelines
    jobs = config.cluster_spec.as_dict() if config is not None and config.cluster_spec else {}
    chiefs = len(jobs.get("chief", [])) + len(jobs.get("master", []))
    count = chiefs + len(jobs.get("worker", []))
    if config is None or count <= 1:
        return 0, 1
    if config.task_type in ("chief", "master"):
        return 0, count
    if config.task_type == "worker":
        return chiefs + int(config.task_id), count
    return 0, 1


def _skip_bad_records(dataset, start, split_size: int, max_bad_fraction: float, stride: int = 1):
    """Drops examples that fail to decode or validate, counting them; fails above the fraction.

    The count is the gap between stream positions and examples kept; the allowance
    is `max_bad_fraction` of what has been read, and never less than that fraction
    of one pass over the split.
    """
    dataset = dataset.apply(tf.data.experimental.ignore_errors())

    def count(kept, element):
        position = element[0]
        seen = (position - start) // stride + 1  # This task reads one position in `stride`.
        skipped = seen - kept - 1
        allowed = tf.cast(max_bad_fraction * tf.cast(tf.maximum(seen, split_size), tf.float64), tf.int64)
        check = tf.debugging.Assert(
            skipped <= allowed,
            [f"lenient mode: more than {max_bad_fraction:.2%} bad records: skipped", skipped, "of", seen],
        )
        with tf.control_dependencies([check]):
            return kept + 1, tf.nest.map_structure(tf.identity, element)

    return dataset.scan(tf.constant(0, tf.int64), count)


def make_input_fn(
    file_pattern,
    batch_size: int,
    image_height: int,
    image_width: int,
    task,
    training: bool = False,
    subset=None,
    seed: int = 0,
    shuffle_buffer: int = 1024,
    augmentations=(),
    preprocess=None,
    eval_size=None,
    eval_resize=None,
    num_parallel_calls: int = tf.data.AUTOTUNE,
    resume: bool = True,
    lenient: bool = False,
    max_bad_fraction: float = 0.01,
    decoded_cache_mb: int = 1024,
):
    """Builds an Estimator `input_fn`.

    Args:
      file_pattern: glob (or list of globs) of the split's TFRecord shards.
      batch_size: examples per batch. Evaluation keeps the partial last batch.
      image_height, image_width: the training crop size (see `preprocess`); every
        training example is this size. Evaluation ignores them (see `eval_size`).
      task: the task object (`models/task.py`): parses and checks the label.
      training: shuffle (seeded), repeat forever, augment, drop the partial batch,
        and start at example `global_step * batch_size` of the stream, so a run
        resumed from a checkpoint sees exactly the batches an uninterrupted run would.
      subset: indices of the examples to keep (see `parse_subset`), or None.
      seed: seeds the shuffle and the augmentation.
      shuffle_buffer: shuffle buffer size, in examples.
      augmentations: ops applied in order in training (see `data/augment.py`),
        each drawing from its own stream of `(seed, position in the stream)`,
        after `preprocess`.
      preprocess: training only: resize, random scale, pad and random crop to
        `image_height` x `image_width` (`data.preprocess.ScaleAndCrop`; None: its
        defaults, which only pad and crop, so an image of the crop size is unchanged).
      eval_size: evaluation only: `(height, width)` every image is padded to (padding
        is never counted; the model runs on each image at its own size). None: the
        largest height and width in the split, read from the records' headers. When
        every image of the split has this size nothing is padded.
      eval_resize: evaluation only, for very large images: `(min_resize_value,
        max_resize_value)` (either None) the image is resized into (DeepLab's
        `resize_to_range`); its logits are resized back, so labels are compared at
        the original size. None: each image at its own size.
      num_parallel_calls: parallelism of the decode map (order is kept).
      resume: in training, skip what the restored global step has consumed (False
        is stock Estimator's behaviour: every restart begins the stream again).
      lenient: training only, opt-in: skip examples that fail to parse, decode or
        validate (bad image bytes, not an Example, wrong mask size, bad label),
        counting them, and fail once they exceed `max_bad_fraction`. A record whose
        TFRecord framing is broken still stops the run (TensorFlow's reader cannot
        resume inside a file). Evaluation is always strict.
      max_bad_fraction: see `lenient`.
      decoded_cache_mb: training only: from the run's first whole epoch on, decode and
        check each example once and keep it in memory, so later epochs only crop and
        augment (the stream is the same, batch for batch: the random crop and the
        augmentations still draw at each position), when the split's decoded images are
        known to fit in this many MiB: every shard has its index (`data/records_index.py`),
        which gives each image's size (counted at 4 bytes a pixel). A split without
        indexes, lenient mode, a cluster's trainers (TF_CONFIG, a strategy's input
        pipelines), or 0 here: every epoch decodes its records again. The decode is more
        than half of the pipeline's work: docs/benchmarks.md, "The training input pipeline".

    Every shard's record framing is checked up front (a truncated shard fails
    here, naming it; an empty one counts 0 records, but a split with no record at
    all fails), and a subset index beyond the split is rejected.
    The returned input_fn carries `files` and `num_examples` (of the split, or of
    the subset) so callers can check an evaluation saw every example; for
    evaluation also `examples`, each example's `(file name, height, width)` by index.

    Returns:
      `input_fn()` returning a dataset of `({"image": uint8 [B,H,W,3],
      "index": int64 [B]}, labels)`, labels as the task defines them (for
      segmentation the int32 mask [B,H,W], padding marked with the ignore label).
      When evaluation pads, features also have `size`, int32 [B, 2], each image's own
      height and width.
    """
    if lenient and not training:
        raise DataError("lenient mode is for training only: evaluation is always strict")
    files, split_size, indices, indexes = _read_split(file_pattern, subset)
    num_records = split_size if indices is None else len(indices)  # An epoch.
    ignore_label = task.ignore_label
    if training:
        cache = not lenient and _fits(indexes, decoded_cache_mb, indices)
        stream = _TrainStream(
            task, batch_size, image_height, image_width, seed, shuffle_buffer, list(augmentations or ()),
            preprocess if preprocess is not None else preprocess_ops.ScaleAndCrop(), ignore_label, resume,
            lenient, max_bad_fraction, split_size, num_records, num_parallel_calls, cache,
        )  # fmt: skip
    else:
        stream = _EvalStream(task, scan_split(files), eval_size, eval_resize, ignore_label, num_parallel_calls)

    def input_fn(config=None, input_context=None):  # Estimator passes its RunConfig, and a strategy's context.
        dataset = _records(files, indices)
        dataset = stream(dataset, config, input_context)  # (index, example) pairs, decoded and checked.
        dataset = dataset.map(functools.partial(_batch_element, task=task))
        dataset = dataset.batch(batch_size, drop_remainder=training)
        dataset = dataset.prefetch(tf.data.AUTOTUNE)
        return dataset if training else dataset.with_options(_eval_options())

    input_fn.files = files
    input_fn.num_examples = num_records
    input_fn.cached = training and stream.cache  # Decoded examples kept (by a single trainer).
    input_fn.task = task
    input_fn.examples = None if training else stream.examples
    spec = {**schema.image_features(), **task.label_features()}
    input_fn.diagnose = lambda: diagnose_files(files, [schema.IMAGE_ENCODED, *task.required_keys()], spec)
    return input_fn


def _fits(indexes, megabytes: int, indices) -> bool:
    """Whether the split's images (those of `indices`, None: all), decoded (4 bytes a pixel: RGB
    and a mask), are known to fit in `megabytes` MiB: every shard has a valid index (`indexes`,
    each shard's as `records_index.read` gives it), which gives each image's size."""
    if megabytes <= 0:
        return False
    if any(index is None for index in indexes):
        return False
    pixels = np.array([int(height) * int(width) for index in indexes for _, height, width in index["examples"]])
    return 4 * int(pixels[indices].sum() if indices is not None else pixels.sum()) <= megabytes * 2**20


def _read_split(file_pattern, subset):
    """`(files, split size, subset indices or None, each shard's index or None)`, every shard's
    framing checked up front (each index read once)."""
    files = list_files(file_pattern)
    indexes = [records_index.read(path) for path in files]
    sizes = [shard_size(path, index) for path, index in zip(files, indexes)]
    split_size = sum(sizes)
    if split_size == 0:
        raise DataError(f"no records in {file_pattern} ({len(files)} empty shard(s))")
    empty = [path for path, size in zip(files, sizes) if size == 0]
    if empty:  # Accepted (DeepLab's converters write some), but never in silence: a failed copy empties one too.
        print(f"notice: {len(empty)} of the {len(files)} shards of {file_pattern} hold no records: "
              f"{', '.join(empty[:3])}{' ...' if len(empty) > 3 else ''}", file=sys.stderr, flush=True)  # fmt: skip
    indices = parse_subset(subset)
    if indices is not None and indices.size == 0:
        raise DataError("subset: empty; give at least one index")
    if indices is not None and indices[-1] >= split_size:
        beyond = indices[indices >= split_size]
        raise DataError(
            f"subset index {beyond[0]} is beyond the split ({split_size} examples in {file_pattern}); "
            f"{len(beyond)} index(es) out of range"
        )
    return files, split_size, indices, indexes


def _records(files, indices):
    """`(index, serialized record)` of the split, only those of `indices` (None: all).

    The subset filter runs on the index, before anything is parsed or decoded, and stops
    reading once every index is found.
    """
    dataset = tf.data.TFRecordDataset(files).enumerate()
    if indices is None:
        return dataset
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(indices), tf.ones(len(indices), tf.int64), tf.int64, tf.int64),
        default_value=0,
    )
    return dataset.filter(lambda index, _: table.lookup(index) > 0).take(len(indices))


@dataclasses.dataclass
class _TrainStream:
    """Training: the records as an endless, seeded, resumable stream of decoded, augmented
    crops (`make_input_fn`'s arguments of the same names)."""

    task: object
    batch_size: int
    height: int
    width: int
    seed: int
    shuffle_buffer: int
    augmentations: list
    preprocess: object
    ignore_label: int
    resume: bool
    lenient: bool
    max_bad_fraction: float
    split_size: int
    num_records: int
    num_parallel_calls: int
    cache: bool = False  # Decode each record once and keep it (`decoded_cache_mb`).

    def __call__(self, records, config, input_context):
        # Exact resume: start where the restored global step left off (Estimator
        # initialises the iterator after restoring the checkpoint, so this reads the
        # restored step). Each epoch is shuffled with its own seed, from the seed and
        # the epoch number, so the stream can start at any epoch without reading the
        # ones before: a resume reads at most one epoch (the skip inside it runs on
        # undecoded records).
        start = _resume_position(self.batch_size, config, input_context) if self.resume else tf.constant(0, tf.int64)
        epochs = functools.partial(_epochs_from, num_records=self.num_records, seed=self.seed,
                                   shuffle_buffer=self.shuffle_buffer)  # fmt: skip
        # Between-graph replication: every trainer reads the same seeded stream and
        # keeps the positions of its shard, so within a pass no two trainers read
        # the same example. The global step counts every trainer's batches, so
        # starting at position `global_step * batch_size` of the whole stream is
        # still where the cluster left off (exactly with one trainer).
        shard, stride = _training_shard(config, input_context)
        if self.cache and stride == 1:  # A cluster's trainer would hold and decode the whole split for its share.
            # From the first whole epoch on, each record is decoded once and kept: the same
            # elements in the same order, so each epoch's seeded shuffle draws the same
            # permutation and the stream is unchanged. A resume inside an epoch ends that
            # epoch decoding as before (its skip stays undecoded); the next one fills the cache.
            decode = functools.partial(_decode, task=self.task)
            decoded = records.map(decode, self.num_parallel_calls, deterministic=True).cache()
            whole = start + (self.num_records - start % self.num_records) % self.num_records
            rest_of_epoch = epochs(records, start=start).take(whole - start)
            rest_of_epoch = rest_of_epoch.map(lambda position, pair: (position, decode(*pair)),
                                              self.num_parallel_calls, deterministic=True)  # fmt: skip
            dataset = rest_of_epoch.concatenate(epochs(decoded, start=whole))
            dataset = dataset.map(self._prepare, self.num_parallel_calls, deterministic=True)
        else:
            dataset = epochs(records, start=start)
            if stride > 1:
                # tf.equal, not ==: in a v1 graph (Estimator) `==` is Python identity, always False,
                # and the filter would spin forever.
                dataset = dataset.filter(lambda position, pair: tf.equal(position % stride, shard))
            dataset = dataset.map(self._decode, self.num_parallel_calls, deterministic=True)
        if self.lenient:
            dataset = _skip_bad_records(dataset, start, self.split_size, self.max_bad_fraction, stride)
        return dataset.map(lambda position, index, example: (index, example))

    def _decode(self, position, pair):
        return self._prepare(position, _decode(*pair, self.task))

    def _prepare(self, position, decoded):
        """The crop and augmentations of the decoded `(index, example)` at stream `position`."""
        index, example = decoded
        key = tf.stack([tf.cast(self.seed, tf.int64), position])
        example = self.preprocess(example, self.height, self.width, self.ignore_label, key)
        example = augment_ops.apply(self.augmentations, example, self.seed, position)
        del example["filename"]
        example["image"] = tf.ensure_shape(example["image"], [self.height, self.width, 3])
        if "mask" in example:
            example["mask"] = tf.ensure_shape(example["mask"], [self.height, self.width])
        return position, index, example


def _eval_options():
    """tf.data's autotuning off for evaluation: the decode then runs min(16, cores) calls at
    once and the prefetch buffer grows by itself when the model waits (tf.data's defaults for
    AUTOTUNE without autotuning). An Estimator that keeps its EVAL graph re-creates the
    iterator at every evaluation; with autotuning on, that stalled for 0.9 to 5 s now and
    then, waiting, not computing (`MakeIterator`): on one core an evaluation took 3.1x as
    long; on two a stall is rare. On a stock Estimator, a new graph at every evaluation,
    autotuning made a whole 2-core evaluation 1.29x as long in 3 of 4 rounds
    (docs/benchmarks.md "Evaluation"). Training makes its iterator once and keeps autotuning."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return options


class _EvalStream:
    """Evaluation: every record once, in order, each image at its own size padded to one
    evaluation size (the padding never counted)."""

    def __init__(self, task, examples, eval_size, eval_resize, ignore_label, num_parallel_calls):
        self.task, self.examples, self.ignore_label = task, examples, ignore_label
        self.resize, self.num_parallel_calls = eval_resize, num_parallel_calls
        sizes = np.array([[height, width] for _, height, width in examples], np.int64)
        largest = tuple(int(v) for v in sizes.max(axis=0))
        self.size = tuple(int(v) for v in eval_size) if eval_size else largest
        self.pad = bool((sizes != np.array(self.size)).any()) or bool(eval_resize)
        self.image_size = None
        if eval_resize:
            resized = np.array([preprocess_ops.resized_size(h, w, *eval_resize) for h, w in sizes], np.int64)
            self.image_size = tuple(int(v) for v in resized.max(axis=0))

    def __call__(self, records, config, input_context):
        del config, input_context  # Every evaluator reads the whole split.

        def decode(index, record):
            return _fit_eval_size(*_decode(index, record, self.task), self.size, self.pad, self.ignore_label,
                                  self.resize, self.image_size)  # fmt: skip

        return records.map(decode, self.num_parallel_calls, deterministic=True)


def scan_split(files) -> list:
    """Each example's `(file name, height, width)`, in index order, from the records.

    From each shard's index when it has a valid one (`data/records_index.py`), else
    from the records: `image/height` and `image/width` when the record has them
    (DeepLab's and this template's writers do), else the encoded image's header
    (PIL reads only the header). Used by evaluation to pad every image to one size and to name
    examples by file in the per-example CSV and the TensorBoard panels.

    Raises:
      DataError: naming the file and record that is corrupt, not an Example, or
        whose image size cannot be read.
    """
    examples = []
    for path in files:
        index = records_index.read(path)
        examples.extend(map(tuple, index["examples"]) if index is not None else scan_shard(path))
    return examples


def scan_shard(path) -> list:
    """`(file name, height, width)` of each example of one shard, read from its records."""
    found = []
    try:
        for record in tf.compat.v1.io.tf_record_iterator(path):
            found.append(_example_size(path, len(found), record))
    except tf.errors.DataLossError as error:
        raise DataError(f"{path}: record {len(found)} is corrupt or truncated ({str(error).splitlines()[0]})") from None
    return found


def _example_size(path, number, record):
    """`(file name, height, width)` of one serialized Example (record `number` of `path`)."""
    import io

    from PIL import Image

    try:
        feature = tf.train.Example.FromString(record).features.feature
    except Exception:  # noqa: BLE001  Any decode failure means "not an Example".
        raise DataError(f"{path}: record {number} is not a tf.train.Example") from None

    def values(key, kind):
        return getattr(feature[key], kind).value if key in feature else []

    name = values(schema.IMAGE_FILENAME, "bytes_list")
    name = name[0].decode("utf-8", "replace") if name else ""
    height, width = values(schema.IMAGE_HEIGHT, "int64_list"), values(schema.IMAGE_WIDTH, "int64_list")
    if height and width and height[0] > 0 and width[0] > 0:
        return name, int(height[0]), int(width[0])
    try:
        with Image.open(io.BytesIO(values(schema.IMAGE_ENCODED, "bytes_list")[0])) as image:
            return name, image.size[1], image.size[0]
    except Exception:  # noqa: BLE001  Missing key or unreadable bytes: name the record.
        raise DataError(f"{path}: record {number} ({name or 'no file name'}): cannot read the image size") from None


def diagnose_files(files, required_keys, features=None) -> str:
    """Reads every record of `files` and names the first bad one; None if all are fine.

    Run only after a failure (it reads and decodes everything): a corrupt or truncated
    record, a record that is not an Example, one without a required key, and, given
    `features` (the parse spec), a feature of the wrong type or length, or encoded
    image bytes (`.../encoded`) that do not decode whole.
    """
    for path in files:
        index = 0
        try:
            for record in tf.compat.v1.io.tf_record_iterator(path):
                try:
                    example = tf.train.Example.FromString(record)
                except Exception:  # noqa: BLE001  Any decode failure means "not an Example".
                    return f"{path}: record {index} is not a tf.train.Example"
                missing = [key for key in required_keys if key not in example.features.feature]
                if missing:
                    return f"{path}: record {index} is not an Example of this task (no {' or '.join(missing)})"
                problem = _feature_problem(example.features.feature, features or {})
                if problem:
                    name = example.features.feature[schema.IMAGE_FILENAME].bytes_list.value
                    name = f" ({name[0].decode('utf-8', 'replace')})" if name else ""
                    return f"{path}: record {index}{name}: {problem}"
                index += 1
        except tf.errors.DataLossError as error:
            return f"{path}: record {index} is corrupt or truncated ({str(error).splitlines()[0]})"
    return None


_KINDS = {tf.string: "bytes_list", tf.int64: "int64_list", tf.float32: "float_list"}


def _feature_problem(feature, spec) -> str:
    """What is wrong with one Example's features against a parse spec, or None."""
    import io

    from PIL import Image

    for key, wanted in spec.items():
        if key not in feature:
            continue  # Absent: a default applies, or required_keys names it.
        kind = feature[key].WhichOneof("kind")
        expected = _KINDS.get(wanted.dtype)
        if expected and kind != expected:
            return f"{key} is {kind or 'empty'}, expected {expected} ({wanted.dtype.name})"
        values = getattr(feature[key], expected).value if expected else []
        length = int(np.prod(wanted.shape)) if wanted.shape else 1
        if expected and len(values) != length:
            return f"{key} has {len(values)} value(s), expected {length}"
        if key.endswith("/encoded") and expected == "bytes_list":
            try:
                with Image.open(io.BytesIO(values[0])) as image:
                    image.load()
            except Exception as error:  # noqa: BLE001  PIL raises many kinds for bad bytes.
                return f"{key} does not decode ({str(error).splitlines()[0] or type(error).__name__})"
    return None
