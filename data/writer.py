"""Writes examples (segmentation, classification or regression) into TFRecord
shards: used by the synthetic generator and the converters in tools/.

Shards hold contiguous blocks of examples in input order, so reading the shards
in name order gives back the input order, and an example's index in its split
(the `index` feature) is its position in the input. A split is written whole into a
staging folder and then takes the place of the split written before it under the same
prefix, whatever its shard count: old shards never remain beside new ones, and a
write that fails leaves the previous split as it was.
"""

import glob
import os
import shutil
import sys
import tempfile
import time

import numpy as np

from common.constants import IGNORE_LABEL
from common.errors import DataError
from data import records_index, schema


def shard_paths(output_prefix: str, num_shards: int) -> list:
    """The shard file names, `PREFIX-00000-of-00004.tfrecord` style."""
    return [f"{output_prefix}-{i:05d}-of-{num_shards:05d}.tfrecord" for i in range(num_shards)]


LABEL_KEYS = ("mask", "class_label", "target")


def write_shards(examples, num_examples: int, output_prefix: str, num_shards: int, progress=True, shown_as=None):
    """Writes `num_examples` examples into `num_shards` TFRecord files, replacing the split's old ones.

    The shards are written into a staging folder beside them; only when every one is
    complete are the split's old shards (`<output_prefix>-NNNNN-of-NNNNN.tfrecord`,
    any count, and their indexes) removed and the new ones moved in. An interrupted or
    failed write leaves the old split as it was and no staging folder.

    Args:
      examples: iterable of dicts `{"image": uint8 [H, W, 3] array or encoded bytes,
        "filename": str, "image_format": optional, for encoded images}` plus exactly
        one label, the same kind for every example: `"mask"` (uint8 [H, W] or PNG
        bytes), `"class_label"` (int) or `"target"` (sequence of floats, the same
        length for every example). See `schema.make_example`.
      num_examples: how many the iterable yields (sets the shard boundaries).
      output_prefix: path prefix of the shards; its folder is created.
      num_shards: number of shards, at most `num_examples`.
      progress: print a progress line to stderr.
      shown_as: the prefix the progress line names (default `output_prefix`).

    Returns:
      dict with `paths`, `num_examples`, `sizes` (each example's `(height, width)`, in
      order) and, by the label kind: `pixel_counts`
      (masks: per mask value, 256 long; encoded masks are not counted),
      `label_counts` (class labels: int64 [max label + 1], examples per class id)
      or `target_summary` (targets: `{"min", "mean", "max"}`, each a list with one
      float per target).

    Raises:
      ValueError: when the iterable yields more or fewer than `num_examples`, or an
        example's label is missing, of another kind than the first's, or malformed
        (naming its file).
    """

    if num_examples < 1:
        raise DataError("no examples to write")
    if not 1 <= num_shards <= num_examples:
        raise DataError(f"num_shards={num_shards} must be between 1 and the {num_examples} examples")
    directory = os.path.dirname(os.path.abspath(output_prefix))
    os.makedirs(directory, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(output_prefix)}.staging-", dir=directory)
    try:
        stats = _write_staged(examples, num_examples, os.path.join(staging, os.path.basename(output_prefix)),
                              num_shards, progress, shown_as or output_prefix)  # fmt: skip
        paths = shard_paths(output_prefix, num_shards)
        for old in split_files(output_prefix):
            os.remove(old)
        for staged, path in zip(stats["paths"], paths):
            os.replace(records_index.index_path(staged), records_index.index_path(path))
            os.replace(staged, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {**stats, "paths": paths}


def split_files(output_prefix: str) -> list:
    """The shards (and their indexes) a write under `output_prefix` made, whatever their count."""
    pattern = f"{glob.escape(output_prefix)}-[0-9][0-9][0-9][0-9][0-9]-of-[0-9][0-9][0-9][0-9][0-9].tfrecord"
    return sorted(glob.glob(pattern) + glob.glob(pattern + records_index.SUFFIX))


def _write_staged(examples, num_examples, output_prefix, num_shards, progress, shown_prefix):
    """Writes the shards under `output_prefix` (the staging folder's), each with its index."""
    import tensorflow as tf

    paths = shard_paths(output_prefix, num_shards)
    bounds = [num_examples * i // num_shards for i in range(num_shards + 1)]
    stats = _LabelStats()
    iterator = iter(examples)
    start = time.time()
    written = 0
    interactive = sys.stderr.isatty()  # A \r progress line only where it redraws.
    all_sizes = []
    for shard, path in enumerate(paths):
        sizes = []  # Each example's (file name, height, width): the shard's index.
        with tf.io.TFRecordWriter(path) as writer:
            for _ in range(bounds[shard], bounds[shard + 1]):
                try:
                    item = next(iterator)
                except StopIteration:
                    raise DataError(f"expected {num_examples} examples, got {written}") from None
                key, label = stats.add(item)
                example = schema.make_example(
                    item["image"], item["filename"], item.get("image_format") or "png", **{key: label}
                )
                writer.write(example.SerializeToString())
                feature = example.features.feature
                height = feature[schema.IMAGE_HEIGHT].int64_list.value[0]
                sizes.append((item["filename"], height, feature[schema.IMAGE_WIDTH].int64_list.value[0]))
                written += 1
                if progress and interactive and (written % 100 == 0 or written == num_examples):
                    rate = written / max(time.time() - start, 1e-9)
                    line = f"\r{shown_prefix}: {written}/{num_examples} examples, {rate:.0f}/s"
                    print(line, end="", file=sys.stderr)
        records_index.write(path, sizes)
        all_sizes += [(height, width) for _, height, width in sizes]
    if next(iterator, None) is not None:
        raise DataError(f"expected {num_examples} examples, got more")
    if progress:
        rate = written / max(time.time() - start, 1e-9)
        end = "\n" if interactive else f"{shown_prefix}: {written} examples in {num_shards} shards, {rate:.0f}/s\n"
        print(end, end="", file=sys.stderr, flush=True)
    return {"paths": paths, "num_examples": written, "sizes": all_sizes, **stats.result()}


class _LabelStats:
    """Checks that every example carries one label of the first example's kind, and sums them up."""

    def __init__(self):
        self.key = None
        self.pixel_counts = np.zeros(256, np.int64)
        self.label_counts = np.zeros(0, np.int64)
        self.target_sum = self.target_min = self.target_max = None
        self.count = 0

    def add(self, item):
        """Returns `(key, label)` of one example dict, after checking it."""
        if not isinstance(item, dict):
            raise DataError(f"an example must be a dict with image, filename and a label, got {type(item).__name__}")
        filename = item.get("filename")
        present = [key for key in LABEL_KEYS if item.get(key) is not None]
        if len(present) != 1:
            raise DataError(
                f"{filename}: an example needs exactly one of {', '.join(LABEL_KEYS)}; got {present or 'none'}"
            )
        key = present[0]
        if self.key is None:
            self.key = key
        elif key != self.key:
            raise DataError(f"{filename}: has a {key} but the examples before it have a {self.key}")
        label = item[key]
        if key == "mask":
            if isinstance(label, np.ndarray):
                self.pixel_counts += np.bincount(np.asarray(label, np.uint8).ravel(), minlength=256)
        elif key == "class_label":
            label = schema.check_class_label(label, filename)
            if label >= len(self.label_counts):
                self.label_counts = np.pad(self.label_counts, (0, label + 1 - len(self.label_counts)))
            self.label_counts[label] += 1
        else:
            label = schema.check_target(label, filename)
            if self.target_sum is None:
                self.target_sum = np.zeros(label.size, np.float64)
                self.target_min, self.target_max = label.astype(np.float64), label.astype(np.float64)
            elif label.size != self.target_sum.size:
                raise DataError(
                    f"{filename}: target has {label.size} value(s), the examples before it {self.target_sum.size}"
                )
            self.target_sum += label
            self.target_min = np.minimum(self.target_min, label)
            self.target_max = np.maximum(self.target_max, label)
        self.count += 1
        return key, label

    def result(self) -> dict:
        if self.key == "class_label":
            return {"label_counts": self.label_counts}
        if self.key == "target":
            mean = self.target_sum / max(self.count, 1)
            return {
                "target_summary": {
                    "min": self.target_min.tolist(),
                    "mean": mean.tolist(),
                    "max": self.target_max.tolist(),
                }
            }
        return {"pixel_counts": self.pixel_counts}


def format_pixel_counts(pixel_counts, class_names=None) -> str:
    """A table of pixel counts per class id present (255 shown as `ignore`)."""
    total = max(int(pixel_counts.sum()), 1)
    lines = [f"{'class':>14} {'pixels':>12} {'share':>7}"]
    for value in np.flatnonzero(pixel_counts):
        if value == IGNORE_LABEL:
            name = "ignore"
        elif class_names and value < len(class_names):
            name = f"{value} {class_names[value]}"
        else:
            name = str(value)
        count = int(pixel_counts[value])
        lines.append(f"{name:>14} {count:>12} {100 * count / total:6.2f}%")
    return "\n".join(lines)


def format_label_counts(label_counts, class_names=None) -> str:
    """A table of examples per class id."""
    total = max(int(np.sum(label_counts)), 1)
    lines = [f"{'class':>14} {'examples':>12} {'share':>7}"]
    for value, count in enumerate(label_counts):
        name = f"{value} {class_names[value]}" if class_names and value < len(class_names) else str(value)
        lines.append(f"{name:>14} {int(count):>12} {100 * int(count) / total:6.2f}%")
    return "\n".join(lines)


def format_target_summary(target_summary, target_names=None) -> str:
    """A table of min, mean and max per regression target."""
    lines = [f"{'target':>14} {'min':>10} {'mean':>10} {'max':>10}"]
    for i, (low, mean, high) in enumerate(zip(target_summary["min"], target_summary["mean"], target_summary["max"])):
        name = target_names[i] if target_names and i < len(target_names) else str(i)
        lines.append(f"{name:>14} {low:>10.4f} {mean:>10.4f} {high:>10.4f}")
    return "\n".join(lines)
