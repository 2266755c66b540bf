"""Writes examples into TFRecord shards: used by the synthetic generator and
`tools/build_tfrecords.py`.

Shards hold contiguous blocks of examples in input order, so reading the shards
in name order gives back the input order, and an example's index in its split
(the `index` feature) is its position in the input.
"""

import os
import sys
import time

import numpy as np

from data import schema


def shard_paths(output_prefix: str, num_shards: int) -> list:
    """The shard file names, `PREFIX-00000-of-00004.tfrecord` style."""
    return [f"{output_prefix}-{i:05d}-of-{num_shards:05d}.tfrecord" for i in range(num_shards)]


def write_shards(examples, num_examples: int, output_prefix: str, num_shards: int, progress=True):
    """Writes `num_examples` examples into `num_shards` TFRecord files.

    Each shard is written to a temporary name and renamed when complete, so an
    interrupted run never leaves a shard that looks finished.

    Args:
      examples: iterable of `(image, mask, filename)` or `(image, mask, filename,
        image_format)` for already-encoded images; see `schema.make_example`.
      num_examples: how many the iterable yields (sets the shard boundaries).
      output_prefix: path prefix of the shards; its folder is created.
      num_shards: number of shards, at most `num_examples`.
      progress: print a progress line to stderr.

    Returns:
      dict with `paths`, `num_examples` and `pixel_counts` (per mask value, 256 long).

    Raises:
      ValueError: when the iterable yields more or fewer than `num_examples`.
    """
    import tensorflow as tf

    if num_examples < 1:
        raise ValueError("no examples to write")
    if not 1 <= num_shards <= num_examples:
        raise ValueError(f"num_shards={num_shards} must be between 1 and the {num_examples} examples")
    os.makedirs(os.path.dirname(os.path.abspath(output_prefix)), exist_ok=True)
    paths = shard_paths(output_prefix, num_shards)
    bounds = [num_examples * i // num_shards for i in range(num_shards + 1)]
    pixel_counts = np.zeros(256, np.int64)
    iterator = iter(examples)
    start = time.time()
    written = 0
    interactive = sys.stderr.isatty()  # A \r progress line only where it redraws.
    for shard, path in enumerate(paths):
        tmp_path = path + ".tmp"
        with tf.io.TFRecordWriter(tmp_path) as writer:
            for _ in range(bounds[shard], bounds[shard + 1]):
                try:
                    image, mask, filename, *image_format = next(iterator)
                except StopIteration:
                    raise ValueError(f"expected {num_examples} examples, got {written}") from None
                if isinstance(mask, np.ndarray):
                    pixel_counts += np.bincount(mask.ravel(), minlength=256)
                example = schema.make_example(image, mask, filename, *image_format)
                writer.write(example.SerializeToString())
                written += 1
                if progress and interactive and (written % 100 == 0 or written == num_examples):
                    rate = written / max(time.time() - start, 1e-9)
                    print(
                        f"\r{output_prefix}: {written}/{num_examples} examples, {rate:.0f}/s", end="", file=sys.stderr
                    )
        os.replace(tmp_path, path)
    if next(iterator, None) is not None:
        raise ValueError(f"expected {num_examples} examples, got more")
    if progress:
        rate = written / max(time.time() - start, 1e-9)
        end = "\n" if interactive else f"{output_prefix}: {written} examples in {num_shards} shards, {rate:.0f}/s\n"
        print(end, end="", file=sys.stderr, flush=True)
    return {"paths": paths, "num_examples": written, "pixel_counts": pixel_counts}


def format_pixel_counts(pixel_counts, class_names=None) -> str:
    """A table of pixel counts per class id present (255 shown as `ignore`)."""
    total = max(int(pixel_counts.sum()), 1)
    lines = [f"{'class':>14} {'pixels':>12} {'share':>7}"]
    for value in np.flatnonzero(pixel_counts):
        if value == schema.IGNORE_LABEL:
            name = "ignore"
        elif class_names and value < len(class_names):
            name = f"{value} {class_names[value]}"
        else:
            name = str(value)
        count = int(pixel_counts[value])
        lines.append(f"{name:>14} {count:>12} {100 * count / total:6.2f}%")
    return "\n".join(lines)
