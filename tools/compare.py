"""Compares two evaluations of the same examples, paired: is B better than A, or luck?

    python tools/compare.py A B [--top=8] [--level=0.95] [--resamples=1000] [--gin_file=CONFIG]
        [--slice_by=SPEC ... [--slice_metadata=meta.csv] [--min_slice_size=20]]

A and B each name an evaluation: an eval directory (its latest evaluation, e.g.
`runs/synthetic/eval`), a model directory (its `eval/`; with several evaluation sets, name
one's `eval_<set>/`), or `DIR@STEP` (the evaluation
of that checkpoint), from one run or two. Each evaluation keeps its examples'
sufficient statistics (`statistics-<step>.npz`, see `metrics/bootstrap.py`), so this
needs no model and no data: it resamples the examples with replacement, the same draws
for A and B, and recomputes every metric on each resample; the 95% interval of B - A
says whether the difference is more than the luck of which examples were drawn.

Prints, per metric and per class, A, B, B - A and its interval; a verdict on the
headline metric ("B is better: mean_iou +0.0120 [+0.0050, +0.0190]" or "no significant
difference: ..."); and the examples whose own score changed most, with the commands that
show them as image panels in TensorBoard (evaluate.py --subset with each side's
checkpoint); with `--gin_file` (the run's config) it runs those evaluations itself, into
`eval_compare_a/` and `eval_compare_b/` of each side's model directory.

With `--slice_by` (the specs of `evaluate.py --slice_by`, metrics/slices.py) it compares them
slice by slice too: the headline's B - A on each slice's examples, paired, with its interval.

Two evaluations of different examples (other indices, other files, another task) are
refused with one line; so is a missing or unreadable evaluation.
"""

import argparse
import os
import subprocess
import sys

import numpy as np

from common import runtime

runtime.quiet()  # Before TensorFlow's first import (core.results): its C++ logs hidden too.
from common.errors import EvaluationError  # noqa: E402
from core import cli, configurables, results  # noqa: E402
from metrics import bootstrap, slices  # noqa: E402


def _statistics_files(eval_dir: str) -> dict:
    return results.files_by_step(eval_dir, results.STATISTICS_FILE_PREFIX, ".npz")


def _model_dir(kept: dict) -> str:
    """The model directory of an evaluation (its statistics file is in `<model_dir>/eval*/`)."""
    return os.path.dirname(os.path.dirname(os.path.abspath(kept["path"])))


def resolve(name: str) -> str:
    """The `statistics-<step>.npz` that `name` (DIR, DIR@STEP) names."""
    directory, _, step = name.partition("@")
    if not os.path.isdir(directory):
        raise EvaluationError(f"{name}: no such directory {directory!r}")
    found = _statistics_files(directory)
    if not found and os.path.isdir(os.path.join(directory, "eval")):  # A model directory.
        directory = os.path.join(directory, "eval")
        found = _statistics_files(directory)
    if not found:
        sets = sorted(entry for entry in os.listdir(directory) if entry.startswith("eval_"))
        if sets and not os.path.isdir(os.path.join(directory, "eval")):  # EVAL_SETS: one directory each.
            raise EvaluationError(
                f"{name}: a model directory of several eval directories: name one ({', '.join(sets)})"
            )
        raise EvaluationError(f"{name}: no evaluation with per-example statistics (statistics-*.npz) in {directory}")
    if not step:
        return found[max(found)]
    if not step.isdigit() or int(step) not in found:
        raise EvaluationError(f"{name}: no evaluation of step {step} in {directory} (there are: {sorted(found)})")
    return found[int(step)]


def load(name: str) -> dict:
    path = resolve(name)
    kept = results.read_statistics(path)  # Arrays only: a data file runs no code.
    kept["path"], kept["name"] = path, name
    kept["task_object"] = results.task_of(kept, path)  # From the task registry, by name.
    return kept


def check_same_examples(a: dict, b: dict):
    """Refuses (one line) two evaluations that are not of the same examples."""
    if a["task"] != b["task"] or a["class_names"] != b["class_names"]:
        raise EvaluationError(
            f"{a['name']} and {b['name']} are different tasks or classes: "
            f"{a['task']} {a['class_names']} against {b['task']} {b['class_names']}"
        )
    if not np.array_equal(a["index"], b["index"]):
        only = sorted(set(a["index"].tolist()) ^ set(b["index"].tolist()))
        raise EvaluationError(
            f"{a['name']} ({len(a['index'])} examples) and {b['name']} ({len(b['index'])} examples) are not "
            f"evaluations of the same examples" + (f": index {only[0]} is in one only" if only else "")
        )
    if a["filenames"] is not None and b["filenames"] is not None and a["filenames"] != b["filenames"]:
        i = next(i for i, (x, y) in enumerate(zip(a["filenames"], b["filenames"])) if x != y)
        raise EvaluationError(
            f"{a['name']} and {b['name']} are not of the same examples: example {a['index'][i]} is "
            f"{a['filenames'][i]!r} in one and {b['filenames'][i]!r} in the other"
        )


def judgement(value: dict, higher_is_better: bool) -> str:
    """ "better", "worse" (B against A), "no significant difference", or "undefined"."""
    if value["low"] is None:
        return "undefined"
    if value["low"] <= 0 <= value["high"]:
        return "no significant difference"
    return "better" if (value["low"] > 0) == higher_is_better else "worse"


def verdict(metric: str, value: dict, higher_is_better: bool) -> str:
    """One line: which side is better on `metric`, or that the interval holds 0."""
    judged = judgement(value, higher_is_better)
    if judged == "undefined":
        return f"undefined: {metric} has no interval (undefined in most resamples)"
    interval = f"{metric} {value['difference']:+.4f} [{value['low']:+.4f}, {value['high']:+.4f}]"
    return f"{'B is ' + judged if judged in ('better', 'worse') else judged}: {interval}"


def per_example_scores(kept: dict):
    """Each example's own value of the task's headline metric (its statistics alone)."""
    task = kept["task_object"]
    return task.from_sums({name: np.asarray(v, np.float64) for name, v in kept["statistics"].items()})[task.headline]


def compare(a: dict, b: dict, level=bootstrap.LEVEL, resamples=bootstrap.NUM_RESAMPLES, seed=bootstrap.SEED):
    check_same_examples(a, b)
    task = a["task_object"]
    return bootstrap.paired_difference(a["statistics"], b["statistics"], task.from_sums, level, resamples, seed)


def _format(value) -> str:
    return "       n/a" if value is None or not np.isfinite(value) else f"{value:10.4f}"


def report(a: dict, b: dict, compared: dict, top: int, level: float, stream=None):
    """Prints the comparison; returns the indices of the examples that changed most."""
    stream = stream or sys.stdout
    task = a["task_object"]
    print(f"A: {a['path']} ({a['checkpoint']})", file=stream)
    print(f"B: {b['path']} ({b['checkpoint']})", file=stream)
    print(f"{len(a['index'])} examples, paired bootstrap, {level:.0%} intervals of B - A", file=stream)
    print(f"\n{'metric':<24} {'A':>10} {'B':>10} {'B - A':>10}  interval", file=stream)
    for metric, value in compared.items():
        interval = "n/a" if value["low"] is None else f"[{value['low']:+.4f}, {value['high']:+.4f}]"
        difference = value["difference"]
        shown = "       n/a" if not np.isfinite(difference) else f"{difference:+10.4f}"
        print(f"{metric:<24} {_format(value['a'])} {_format(value['b'])} {shown}  {interval}", file=stream)
    headline = task.headline
    print("\n" + verdict(headline, compared[headline], task.higher_is_better(headline)), file=stream)
    scores_a, scores_b = per_example_scores(a), per_example_scores(b)
    change = scores_b - scores_a
    order = [i for i in np.argsort(-np.abs(np.nan_to_num(change)), kind="stable") if np.isfinite(change[i])][:top]
    print(f"\nexamples whose {headline} changed most:", file=stream)
    for i in order:
        name = f"  {a['filenames'][i]}" if a["filenames"] else ""
        print(
            f"  index {a['index'][i]:6d}  A {scores_a[i]:.4f}  B {scores_b[i]:.4f}  {change[i]:+.4f}{name}", file=stream
        )
    return [int(a["index"][i]) for i in order]


def compare_slices(a: dict, b: dict, masks: dict, min_size: int, level=bootstrap.LEVEL,
                   resamples=bootstrap.NUM_RESAMPLES, seed=bootstrap.SEED) -> dict:  # fmt: skip
    """`{slice: {"num_examples", "a", "b", "difference", "low", "high"}}` of the headline, or
    `{"num_examples", "too_small": True}`: each slice's paired comparison."""
    check_same_examples(a, b)
    task = a["task_object"]
    out = {}
    for name, mask in masks.items():
        count = int(np.count_nonzero(mask))
        if count < min_size:
            out[name] = {"num_examples": count, "too_small": True}
            continue
        pick = {
            side: {key: np.asarray(v)[mask] for key, v in kept["statistics"].items()}
            for side, kept in (("a", a), ("b", b))
        }
        compared = bootstrap.paired_difference(pick["a"], pick["b"], task.from_sums, level, resamples, seed)
        out[name] = {"num_examples": count, **compared[task.headline]}
    return out


def report_slices(a: dict, compared: dict, stream=None):
    """Prints each slice's paired comparison of the headline, the most changed first."""
    stream = stream or sys.stdout
    task = a["task_object"]
    headline = task.headline
    width = max([len(name) for name in compared] + [5])
    print(f"\nslices, {headline} (paired):", file=stream)
    print(f"  {'slice':<{width}} {'examples':>8} {'A':>10} {'B':>10} {'B - A':>10}  interval", file=stream)
    order = sorted(compared, key=lambda name: -abs(np.nan_to_num(compared[name].get("difference", 0.0))))
    for name in order:
        value = compared[name]
        if value.get("too_small"):
            print(f"  {name:<{width}} {value['num_examples']:8d}  too small", file=stream)
            continue
        line = f"  {name:<{width}} {value['num_examples']:8d} {_format(value['a'])} {_format(value['b'])} "
        judged = judgement(value, task.higher_is_better(headline))
        judged = "B " + judged if judged in ("better", "worse") else judged
        interval = "n/a" if value["low"] is None else f"[{value['low']:+.4f}, {value['high']:+.4f}]"
        print(line + f"{value['difference']:+10.4f}  {interval}  {judged}", file=stream)


def panel_commands(a: dict, b: dict, picked, gin_files=(), gin_params=()):
    """The evaluate.py command lines that show `picked` examples as each side's panels."""
    commands = []
    for side, kept in (("a", a), ("b", b)):
        command = ["evaluate.py", *[f"--gin_file={g}" for g in gin_files], f"--model_dir={_model_dir(kept)}"]
        command += [f"--gin_param={p}" for p in gin_params]
        command += [f"--checkpoint={kept['checkpoint']}", f"--subset={','.join(map(str, picked))}"]
        command += [f"--eval_set={name}" for name in [_eval_set_of(kept)] if name]
        commands.append(command + [f"--eval_name=compare_{side}"])
    return commands


def _eval_set_of(kept: dict):
    """The evaluation set (gin's EVAL_SETS, when a config is parsed) whose `eval_<set>/` holds
    `kept`, so its panels show that set's examples; None otherwise."""
    directory = os.path.basename(os.path.dirname(kept["path"]))
    try:
        sets = configurables.macro("EVAL_SETS") or {}
    except ValueError:  # No config parsed: no sets known.
        return None
    name = directory.removeprefix("eval_")
    return name if directory.startswith("eval_") and name in sets else None


def add_slice_flags(parser, required=False, gin_help="The run's config (a fork's own task)."):
    """The slice flags of tools/compare.py, tools/slices.py and tools/validate.py (the specs
    of `evaluate.py --slice_by`), and `--gin_file`."""
    parser.add_argument("--slice_by", action="append", default=[], required=required,
                        help="size, class, area, file:REGEX, a metadata column, or A*B (repeat the flag).")  # fmt: skip
    parser.add_argument("--slice_metadata", default=None, help="A CSV of per-file columns for column slices.")
    parser.add_argument("--min_slice_size", type=int, default=slices.MIN_SIZE)
    parser.add_argument("--gin_file", action="append", default=[], help=gin_help)


def slicing_of(args) -> slices.Slicing:
    """The `metrics.slices.Slicing` of flags added by `add_slice_flags`."""
    return slices.Slicing(args.slice_by, args.slice_metadata, args.min_slice_size)


def _main(argv) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--top", type=int, default=8, help="Examples whose score changed most to list.")
    parser.add_argument("--level", type=float, default=bootstrap.LEVEL)
    parser.add_argument("--resamples", type=int, default=bootstrap.NUM_RESAMPLES)
    parser.add_argument("--seed", type=int, default=bootstrap.SEED)
    add_slice_flags(parser, gin_help="The run's config: show the panels too.")
    parser.add_argument("--gin_param", action="append", default=[], help="And its bindings, as train.py took them.")
    args = parser.parse_args(argv)
    if args.gin_file:  # Its `import` loads a fork's own task, so its name is known.
        configurables.parse_gin(args.gin_file, args.gin_param)
    a, b = load(args.a), load(args.b)
    compared = compare(a, b, args.level, args.resamples, args.seed)
    picked = report(a, b, compared, args.top, args.level)
    if args.slice_by:
        slicing = slicing_of(args)
        masks = results.slice_masks(a, a["task_object"], slicing, a["path"])
        report_slices(a, compare_slices(a, b, masks, slicing.min_size, args.level, args.resamples, args.seed))
    commands = panel_commands(a, b, picked, args.gin_file, args.gin_param)
    if not picked:
        return 0
    if not args.gin_file:
        print("\nto see them as image panels in TensorBoard (with the run's --gin_file):")
        print("\n".join("  python " + " ".join(command) for command in commands))
        return 0
    for command in commands:
        script = os.path.join(runtime.REPO_ROOT, command[0])
        run = subprocess.run([sys.executable, script, *command[1:]], capture_output=True, text=True)
        if run.returncode:
            last = run.stderr.strip().splitlines()[-1] if run.stderr.strip() else "failed"
            raise EvaluationError(f"evaluate.py: {last.removeprefix('error: ')}")
    print(f"\npanels: tensorboard --logdir_spec=A:{_model_dir(a)}/eval_compare_a,B:{_model_dir(b)}/eval_compare_b")
    return 0


def main(argv=None) -> int:
    """The command line; a refusal or a missing evaluation is one `error:` line and exit 1."""
    return cli.call(_main, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
