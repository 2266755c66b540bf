"""A small index beside each TFRecord shard, so start-up reads one small file per shard
instead of every record.

`<shard>.index.json` holds the shard's record count and each example's
`(file name, height, width)`: what `make_input_fn` needs before the first step (the
split's size; for evaluation, each image's size and name). It is trusted only while
the shard's size and modification time are the ones it records; anything else (a
shard rewritten, appended to, or copied without its times) falls back to reading the
records, as a shard without an index does.

The converter (`data/writer.py`, behind `tools/build_tfrecords.py` and the synthetic
datasets) writes it. For shards made elsewhere (DeepLab's own converters):

    .venv/bin/python tools/index_records.py 'datasets/voc/*.tfrecord'

File patterns never match an index: `list_files` leaves them out.
"""

import json
import os

from common import files

SUFFIX = ".index.json"
VERSION = 1


def index_path(shard: str) -> str:
    return shard + SUFFIX


def is_index(path: str) -> bool:
    return path.endswith(SUFFIX)


def _stat(path: str):
    stat = os.stat(path)
    return stat.st_size, stat.st_mtime_ns


def write(shard: str, examples) -> str:
    """Writes `shard`'s index (atomically) from its examples' `(file name, height, width)`."""
    size, mtime_ns = _stat(shard)
    examples = [[str(name), int(height), int(width)] for name, height, width in examples]
    content = {"version": VERSION, "size": size, "mtime_ns": mtime_ns, "count": len(examples), "examples": examples}
    return files.write_atomic(index_path(shard), json.dumps(content, separators=(",", ":")))


def read(shard: str):
    """`shard`'s index as a dict, or None when it has none or the shard changed since."""
    try:
        with open(index_path(shard)) as f:
            index = json.load(f)
        current = _stat(shard)
    except (OSError, ValueError):
        return None
    if not isinstance(index, dict) or index.get("version") != VERSION:
        return None
    if (index.get("size"), index.get("mtime_ns")) != current or len(index.get("examples", ())) != index.get("count"):
        return None
    return index
