"""Sliced metrics of a finished evaluation, from its statistics alone: no model, no data.

    python tools/slices.py EVAL --slice_by=size [--slice_by='file:^(\\w+?)_'] [--slice_by=class*size]
        [--slice_metadata=meta.csv] [--min_slice_size=20] [--json] [--gin_file=CONFIG]

EVAL names an evaluation as tools/compare.py takes it: an eval directory (its latest
evaluation), a model directory (its `eval/`), or `DIR@STEP`; with several evaluation sets,
one set's `eval_<set>/`. Prints each slice's headline
metric with its 95% bootstrap interval, worst first (`--json`: every metric, interval and
summed statistic of each slice, as `results.jsonl`'s `"slices"` holds them). The slice specs
are those of `evaluate.py --slice_by` (metrics/slices.py).
"""

import argparse
import json
import sys

from common import runtime

runtime.quiet()  # Before TensorFlow's first import (core.results): its C++ logs hidden too.
from core import cli, configurables, results  # noqa: E402
from metrics import slices  # noqa: E402
from tools import compare  # noqa: E402


def sliced(kept: dict, args) -> dict:
    """`{slice: ...}` of a loaded evaluation (`compare.load`) for the parsed slice flags."""
    return results.compute_slices(kept, kept["task_object"], compare.slicing_of(args), kept["path"])


def _main(argv) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("evaluation")
    compare.add_slice_flags(parser, required=True)
    parser.add_argument("--json", action="store_true", help="Print the slices as JSON.")
    args = parser.parse_args(argv)
    if args.gin_file:
        configurables.parse_gin(args.gin_file)
    kept = compare.load(args.evaluation)
    task = kept["task_object"]
    found = sliced(kept, args)
    if args.json:
        print(json.dumps(found, allow_nan=False))
        return 0
    print(f"{kept['path']} ({kept['checkpoint']}), {len(kept['index'])} examples")
    print(slices.table(found, task.headline, task.higher_is_better(task.headline)))
    return 0


def main(argv=None) -> int:
    """The command line; a bad spec or a missing evaluation is one `error:` line and exit 1."""
    return cli.call(_main, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
