"""Writes the index beside each TFRecord shard (`data/records_index.py`) for shards made
elsewhere, e.g. by DeepLab's own converters, so start-up reads one small file per shard:

    .venv/bin/python tools/index_records.py 'datasets/voc/*.tfrecord' [...]

Each shard is read once. The converter of this template writes the index itself.
"""

import sys

from common import runtime
from core import cli  # First: it quiets TensorFlow's start-up before TensorFlow loads.
from data import input as data_input
from data import records_index


def main(patterns) -> int:
    """Indexes every shard matching `patterns`; prints one line per shard."""
    if not patterns:
        print("usage: python tools/index_records.py 'PATTERN' [...]", file=sys.stderr)
        return 2
    runtime.quiet()
    for shard in data_input.list_files(patterns):
        examples = data_input.scan_shard(shard)
        print(f"{records_index.write(shard, examples)}: {len(examples)} examples")
    return 0


if __name__ == "__main__":
    sys.exit(cli.call(main, sys.argv[1:]))
