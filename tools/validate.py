"""Gates a CI can run: may this evaluation's model ship? BLESSED (exit 0) or NOT BLESSED (exit 1).

    python tools/validate.py EVAL [--require='mean_iou >= 0.95'] [--require='slice:* mean_iou >= 0.9']
        [--baseline=DIR@STEP --max_drop='mean_iou 0.01'] [--slice_by=SPEC ...] [--export_dir=DIR]

EVAL (and BASELINE) name evaluations as tools/compare.py takes them: an eval directory, a
model directory or `DIR@STEP`. Two kinds of threshold, each optionally on slices
(`slice:PATTERN METRIC ...`, PATTERN a glob over the slice names of `--slice_by`, e.g.
`slice:size:*` or `slice:*`):

- `--require='METRIC OP VALUE'` (OP one of >=, >, <=, <): a value threshold, judged on
  the evaluation's value (its 95% interval is printed beside it);
- `--max_drop='METRIC AMOUNT'`: a change threshold against `--baseline` (the same
  examples), judged on the paired bootstrap interval of the change, not on the point
  values: it holds when the whole interval shows a loss of at most AMOUNT (a
  non-inferiority test; for a lower-is-better metric such as rmse, a rise of at most
  AMOUNT). A smaller evaluation set gives a wider interval: a gate it cannot settle fails.

A slice under `--min_slice_size` examples is not judged (said on its line). Prints one
line per check, then `BLESSED` or `NOT BLESSED`; writes the verdict as JSON beside the
evaluation (`blessing-<step>.json`) and, with `--export_dir`, into that folder
(`blessing.json` and an empty `BLESSED` or `NOT_BLESSED` file, as TFX's Evaluator
marks a model). An unreadable evaluation or a malformed threshold is one `error:` line
and exit 2, so a CI can tell "not blessed" from "could not judge".
"""

import argparse
import fnmatch
import json
import os
import re
import sys

import numpy as np

from common import runtime

runtime.quiet()  # Before TensorFlow's first import (core.results): its C++ logs hidden too.
from common import files  # noqa: E402
from common.errors import ConfigError, UserError, first_line  # noqa: E402
from core import cli, configurables, results  # noqa: E402
from metrics import bootstrap  # noqa: E402
from tools import compare  # noqa: E402

_OPERATORS = {">=": np.greater_equal, ">": np.greater, "<=": np.less_equal, "<": np.less}
_REQUIRE = re.compile(r"^\s*(?:slice:(\S+)\s+)?([\w/.:-]+)\s*(>=|<=|>|<)\s*([-+0-9.eE]+)\s*$")
_MAX_DROP = re.compile(r"^\s*(?:slice:(\S+)\s+)?([\w/.:-]+)\s+([0-9.eE+-]+)\s*$")


def parse(text: str, kind: str) -> dict:
    """`{"text", "kind", "slice" (glob or None), "metric", "op", "value"}` of one threshold."""
    found = (_REQUIRE if kind == "require" else _MAX_DROP).match(text)
    example = "'mean_iou >= 0.95'" if kind == "require" else "'mean_iou 0.01'"
    try:
        value = float(found.group(4 if kind == "require" else 3)) if found else None
    except ValueError:
        value = None
    if value is None or (kind == "max_drop" and value < 0):
        raise ConfigError(f"--{kind} {text!r}: expected [slice:PATTERN] {example}")
    return {
        "text": f"{kind} {text.strip()}",
        "kind": kind,
        "slice": found.group(1),
        "metric": found.group(2),
        "op": found.group(3) if kind == "require" else None,
        "value": value,
    }


def _sets(kept: dict, masks: dict, pattern, min_size: int):
    """`[(slice name or None, bool mask or None, too small)]` a threshold applies to."""
    if pattern is None:
        return [(None, None, False)]
    names = [name for name in masks if fnmatch.fnmatchcase(name, pattern)]
    if not names:
        raise ConfigError(f"slice:{pattern} matches no slice of --slice_by (there are: {', '.join(masks) or 'none'})")
    return [(name, masks[name], int(np.count_nonzero(masks[name])) < min_size) for name in names]


def judge(kept: dict, baseline, thresholds, masks: dict, min_size: int) -> list:
    """One check per threshold and slice: `{"threshold", "slice", "metric", "passed", ...}`."""
    task = kept["task_object"]
    checks = []
    for threshold in thresholds:
        if threshold["kind"] == "max_drop" and baseline is None:
            raise ConfigError(f"--{threshold['text']}: needs --baseline")
        for name, mask, too_small in _sets(kept, masks, threshold["slice"], min_size):
            check = {"threshold": threshold["text"], "slice": name, "metric": threshold["metric"]}
            checks.append(check)
            if too_small:
                check.update(passed=None, reason=f"not judged: fewer than {min_size} examples")
                continue
            if threshold["kind"] == "require":
                _value_check(check, threshold, _rows(kept["statistics"], mask), task)
            else:
                before, after = _rows(baseline["statistics"], mask), _rows(kept["statistics"], mask)
                _change_check(check, threshold, before, after, task)
    return checks


def _rows(statistics: dict, mask) -> dict:
    return statistics if mask is None else {name: np.asarray(values)[mask] for name, values in statistics.items()}


def _metric(values: dict, metric: str, task):
    if metric not in values:
        raise ConfigError(f"{metric!r} is not a metric of the {task.name} task (it has: {', '.join(values)})")
    return values[metric]


def _value_check(check, threshold, statistics, task):
    value = float(_metric(task.from_sums(bootstrap.totals(statistics)), threshold["metric"], task)[0])
    interval = bootstrap.intervals(statistics, task.from_sums).get(threshold["metric"])
    check.update(value=None if np.isnan(value) else value, low=interval and interval["low"])
    check.update(high=interval and interval["high"])
    passed = bool(not np.isnan(value) and _OPERATORS[threshold["op"]](value, threshold["value"]))
    check.update(passed=passed, reason="" if not np.isnan(value) else "undefined")


def _change_check(check, threshold, before, after, task):
    metric = threshold["metric"]
    compared = _metric(bootstrap.paired_difference(before, after, task.from_sums), metric, task)
    check.update(value=compared["difference"], low=compared["low"], high=compared["high"], baseline=compared["a"])
    if compared["low"] is None:
        check.update(passed=False, reason="undefined")
    elif task.higher_is_better(metric):
        check.update(passed=compared["low"] >= -threshold["value"], reason="")
    else:
        check.update(passed=compared["high"] <= threshold["value"], reason="")


def line(check: dict) -> str:
    """One printed verdict line."""
    verdict = {True: "PASS", False: "FAIL", None: "SKIP"}[check["passed"]]
    where = f" [slice {check['slice']}]" if check["slice"] else ""
    if check.get("value") is None:
        return f"{verdict}  {check['threshold']}{where}: {check['reason'] or 'undefined'}"
    change = "baseline" in check
    sign = "+" if change else ""
    interval = f" [{check['low']:{sign}.4f}, {check['high']:{sign}.4f}]" if check.get("low") is not None else ""
    shown = f"change {check['value']:+.4f}" if change else f"{check['value']:.4f}"
    return f"{verdict}  {check['threshold']}{where}: {shown}{interval}"


def write_verdict(kept: dict, baseline, checks: list, export_dir=None) -> dict:
    """The verdict as JSON beside the evaluation and, with `export_dir`, in it with a marker file."""
    blessed = all(check["passed"] is not False for check in checks)
    verdict = {
        "blessed": blessed,
        "evaluation": kept["path"],
        "checkpoint": kept["checkpoint"],
        "baseline": baseline["path"] if baseline else None,
        "checks": checks,
    }
    text = json.dumps(verdict, indent=1, allow_nan=False) + "\n"
    step = os.path.basename(kept["path"])[len(results.STATISTICS_FILE_PREFIX) : -len(".npz")]
    files.write_atomic(os.path.join(os.path.dirname(kept["path"]), f"blessing-{step}.json"), text)
    if export_dir:
        if not os.path.isdir(export_dir):
            raise ConfigError(f"--export_dir {export_dir}: no such folder")
        files.write_atomic(os.path.join(export_dir, "blessing.json"), text)
        for marker in ("BLESSED", "NOT_BLESSED"):
            path = os.path.join(export_dir, marker)
            if os.path.exists(path):
                os.remove(path)
        files.write_atomic(os.path.join(export_dir, "BLESSED" if blessed else "NOT_BLESSED"), "")
    return verdict


def _main(argv) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("evaluation")
    parser.add_argument("--require", action="append", default=[], help="'[slice:PATTERN] METRIC OP VALUE'")
    parser.add_argument("--max_drop", action="append", default=[], help="'[slice:PATTERN] METRIC AMOUNT'")
    parser.add_argument("--baseline", default=None, help="The evaluation change thresholds compare against.")
    parser.add_argument("--export_dir", default=None, help="Also write the verdict into this export folder.")
    compare.add_slice_flags(parser)
    args = parser.parse_args(argv)
    thresholds = [parse(text, "require") for text in args.require]
    thresholds += [parse(text, "max_drop") for text in args.max_drop]
    if not thresholds:
        raise ConfigError("no threshold: give --require and/or --max_drop")
    if args.gin_file:
        configurables.parse_gin(args.gin_file)
    kept = compare.load(args.evaluation)
    baseline = compare.load(args.baseline) if args.baseline else None
    if baseline is not None:
        compare.check_same_examples(baseline, kept)
    slicing = compare.slicing_of(args)
    masks = results.slice_masks(kept, kept["task_object"], slicing, kept["path"]) if slicing else {}
    checks = judge(kept, baseline, thresholds, masks, slicing.min_size)
    print(f"{kept['path']} ({kept['checkpoint']}), {len(kept['index'])} examples")
    for check in checks:
        print(line(check))
    verdict = write_verdict(kept, baseline, checks, args.export_dir)
    failed = [check for check in checks if check["passed"] is False]
    if failed:
        where = f" [slice {failed[0]['slice']}]" if failed[0]["slice"] else ""
        print(f"NOT BLESSED: {len(failed)} of {len(checks)} checks failed, the first {failed[0]['threshold']}{where}")
    else:
        print("BLESSED", flush=True)
    return 0 if verdict["blessed"] else 1


def main(argv=None) -> int:
    """0: blessed; 1: not blessed; 2: could not judge (one `error:` line)."""
    try:
        return _main(sys.argv[1:] if argv is None else argv)
    except UserError as error:
        print(f"error: {first_line(error)}", file=sys.stderr, flush=True)
        return 2
    except SystemExit as stop:  # argparse's usage error: 2 already.
        return stop.code if isinstance(stop.code, int) else 2


if __name__ == "__main__":
    sys.exit(cli.call(main, sys.argv[1:]))
