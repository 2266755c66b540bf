"""Benchmark: what a subset and the evaluation hooks cost, against a full evaluation.

On a synthetic val split of 2,000 examples at 256x256 (written once to
datasets/bench_eval_256/), with the default U-Net at a one-step checkpoint:
  - `subset_1pct_cost_ratio`: `Estimator.evaluate` of 20 examples (1%, through the
    input_fn's enumerate/filter) / a full evaluation of the 2,000;
  - `hooks_overhead_ratio`: a full evaluation with every hook and summary (per-example
    values and statistics, 16 image panels, confusion image and table, per-class logging
    every 20 batches) / the same evaluation with the metrics only (`--examples=N`: of the
    first N examples; `--hooks=panels,logging`: with only those, to find what costs);
  - `intervals_cost_ratio`: the 95% bootstrap intervals every evaluation reports
    (1,000 resamples of the per-example statistics) / that full evaluation; and their
    seconds at PASCAL VOC val's size (1,449 examples, 21 classes); `slicing_seconds_20_slices`
    and `slicing_cost_ratio`: 20 slices (100 to 2,000 examples each) of that evaluation's
    statistics, each with its metrics and intervals (metrics/slices.py), and over it;
  - `hooks_per_example_us`: whether the hooks' cost grows with the evaluation set (the
    per-example values and statistics are collected into variables that grow, the part
    of the hooks whose cost could): their update ops alone, in one session, on batches of
    64 32x32 label maps, per example over 2,000, 20,000 and 100,000 examples (the fastest
    of at least 10 rounds; `hooks_per_example_cpu_us` in CPU time), and `hooks_growth_ratio`
    (`hooks_growth_cpu_ratio`), that at 20,000 over that at 2,000 (`hooks_growth_ratio_largest`:
    at 100,000);
  - `second_set_cost_ratio`: what a second evaluation set (EVAL_SETS) adds to each
    checkpoint's evaluation, over one set, both sets 400 examples at 64x64 (`make train`'s
    val split) with every hook, on `core.estimator.Estimator` keeping a graph per set
    (1.0: a set costs what its own examples cost); `one_kept_graph_vs_one_per_set`: the two
    sets on an Estimator that keeps one graph (rebuilt at every switch of set) over it;
  - `eval_autotune_off_speedup`: that evaluation (one set) with tf.data's autotuning off, as
    data/input.py reads evaluation, against on (the median of each's rounds: see `_autotune`);
    `eval_autotune_off_speedup_stock` (`--sections=autotune_stock`, not run by default): the
    same on the 2,000 examples at 256x256, stock Estimator, metrics only.
Each evaluation is timed end to end (graph, session, restore, every batch), in wall time
and in the process's CPU seconds (`hooks_cpu_ratio`). The variants take turns in ABBA order
(forward, then backward, ...), so an evaluation that runs faster after another favours
none, and each variant's time is its fastest round: with tf.data's autotuning on (as
evaluation read until 2026-12-06) a whole evaluation ran in one of two states, about 1.9 or
1.5 cores busy (65 or 83 s here) for the same CPU seconds, whichever variant it was
(docs/benchmarks.md), so a median or a within-round ratio read the states' draw as a cost.
Every round is printed with its cores in use (CPU seconds over wall). The last line is one
JSON object.

    .venv/bin/python bench/eval.py [--repeats=6] [--sections=hooks,growth,sets,autotune[,autotune_stock]]
        [--examples=2000] [--hooks=all|per_example,panels,confusion,logging]
"""

import argparse
import io
import json
import os
import tempfile
import time
from contextlib import redirect_stdout

import numpy as np

from common import runtime

runtime.hide_native_logs()

from common import determinism  # noqa: E402  After the line above: it loads TensorFlow.

SIZE = 256
NUM_EXAMPLES = 2000
GROWTH_SIZE = 32
GROWTH_EXAMPLES = (2000, 20000, 100000)  # hooks_growth_ratio: the second over the first.
HOOKS = ("per_example", "panels", "confusion", "logging")  # --hooks: what "every hook" adds.
SETS_SIZE, SETS_EXAMPLES = 64, 400
CLASS_NAMES = ["background", "circle", "square", "triangle"]


def _dataset(size: int, count: int):
    """The synthetic val split of `count` examples at `size`, written once."""
    from data import synthetic, writer

    suffix = "" if count == NUM_EXAMPLES else f"_{count}"
    folder = os.path.join(runtime.REPO_ROOT, "datasets", f"bench_eval_{size}{suffix}")
    marker = os.path.join(folder, "done")
    if not os.path.exists(marker):
        examples = (synthetic.example("segmentation", 0, "val", i, size, size) for i in range(count))
        writer.write_shards(examples, count, os.path.join(folder, "val"), 8)
        open(marker, "w").close()
    return os.path.join(folder, "val-*.tfrecord")


def take_turns(variants: dict, repeats: int, cpu: dict = None) -> dict:
    """`{name: [seconds]}`: each variant `() -> None` run `repeats` times, in ABBA order.
    `cpu`, if given, gets `{name: [CPU seconds]}`: the process's, all its threads'."""
    seconds = {name: [] for name in variants}
    names = list(variants)
    for number in range(repeats):
        for name in names if number % 2 == 0 else names[::-1]:
            start, start_cpu = time.perf_counter(), time.process_time()
            variants[name]()
            seconds[name].append(time.perf_counter() - start)
            if cpu is not None:
                cpu.setdefault(name, []).append(time.process_time() - start_cpu)
    return seconds


class _Bench:
    """One dataset, one one-step checkpoint, model_fns with and without the hooks."""

    def __init__(self, size: int, count: int, batch_size: int, network=None):
        import tensorflow as tf

        from data.input import make_input_fn
        from models.segmentation import Segmentation
        from models.unet import UNet

        self.size, self.count, self.batch_size = size, count, batch_size
        self.network = network or UNet()
        self.pattern = _dataset(size, count)
        self.task = Segmentation(4, CLASS_NAMES)
        self.model_dir = tempfile.mkdtemp(prefix="bench_eval_")
        train = make_input_fn(self.pattern, 4, size, size, self.task, training=True)
        tf.estimator.Estimator(self.model_fn(False), self.model_dir).train(train, max_steps=1)
        self.checkpoint = tf.train.latest_checkpoint(self.model_dir)

    def model_fn(self, with_hooks, count=None):
        """Metrics only (`with_hooks` False), every hook (True), or those named in a set of
        HOOKS; panels of 16 examples spread over the first `count` (default all)."""
        from hooks.eval_logging import per_class_logging
        from models import build_model_fn
        from models.segmentation import Segmentation

        chosen = set(HOOKS) if with_hooks is True else set(with_hooks or ())
        count = count or self.count
        return build_model_fn(
            self.network,
            Segmentation(4, CLASS_NAMES, confusion_summary="confusion" in chosen),
            summary_indices=list(range(0, count, count // 16))[:16] if "panels" in chosen else (),
            per_example="per_example" in chosen,
            evaluation_hooks=[per_class_logging(every_n_steps=20)] if "logging" in chosen else (),
        )

    def evaluation(self, with_hooks, subset=None, kept=None, autotune=False):
        """`() -> None`: one `Estimator.evaluate` of the checkpoint, its example count checked
        (`autotune`: reading with tf.data's autotuning on, as evaluation did until 2026-12-06)."""
        import tensorflow as tf

        from data.input import make_input_fn

        model_fn = self.model_fn(with_hooks, None if subset is None else len(subset))
        expected = self.count if subset is None else len(subset)

        def run():
            estimator = tf.estimator.Estimator(model_fn, self.model_dir)
            inputs = make_input_fn(self.pattern, self.batch_size, self.size, self.size, self.task, subset=subset)
            inputs = _autotuned(inputs) if autotune else inputs
            with redirect_stdout(io.StringIO()):  # The logging hook's lines.
                result = estimator.evaluate(inputs, checkpoint_path=self.checkpoint, name="bench")
            assert result["num_examples"] == expected, (result["num_examples"], expected)
            if kept is not None:
                kept["result"] = result

        return run

    def kept_evaluation(self, model_fn, *input_fns, max_eval_graphs=1, name="set"):
        """`() -> None`: the checkpoint evaluated on each of `input_fns` in turn (into
        `<name>_<i>`) by one `core.estimator.Estimator` that keeps up to `max_eval_graphs` EVAL
        graphs across calls, as a training run does; each count checked."""
        from core.estimator import Estimator

        estimator = Estimator(model_fn, self.model_dir, max_eval_graphs=max_eval_graphs)

        def run():
            for number, input_fn in enumerate(input_fns):
                with redirect_stdout(io.StringIO()):
                    result = estimator.evaluate(input_fn, checkpoint_path=self.checkpoint, name=f"{name}_{number}")
                assert result["num_examples"] == self.count, (result["num_examples"], self.count)

        return run


def _rounds(seconds, cpu_seconds) -> str:
    """Each round's wall seconds and cores in use (CPU seconds over wall), for the output."""
    return ", ".join(f"{wall:.2f} ({used / wall:.2f})" for wall, used in zip(seconds, cpu_seconds))


def _hooks(args) -> dict:
    bench = _Bench(SIZE, NUM_EXAMPLES, args.batch_size)
    subset = list(range(0, NUM_EXAMPLES, 100))  # 20 examples: 1%.
    full = None if args.examples >= NUM_EXAMPLES else list(range(args.examples))  # --examples: the first N.
    hooks = True if args.hooks == "all" else args.hooks.split(",")
    unknown = set(hooks) - set(HOOKS) if hooks is not True else set()
    if unknown:
        raise SystemExit(f"--hooks: unknown {', '.join(sorted(unknown))} (known: all, {', '.join(HOOKS)})")
    kept, cpu = {}, {}
    seconds = take_turns(
        {
            "full_metrics_only": bench.evaluation(False, full),
            "subset_1pct": bench.evaluation(False, subset),
            "full_all_hooks": bench.evaluation(hooks, full, kept=kept),
        },
        args.repeats,
        cpu,
    )
    fastest = {name: min(values) for name, values in seconds.items()}
    least_cpu = {name: min(values) for name, values in cpu.items()}
    for name, values in seconds.items():
        print(f"{name:>18}: {fastest[name]:7.2f} s, {least_cpu[name]:7.2f} CPU s  "
              f"(rounds, s (cores): {_rounds(values, cpu[name])})", flush=True)  # fmt: skip
    figures = {
        "subset_1pct_cost_ratio": round(fastest["subset_1pct"] / fastest["full_metrics_only"], 4),
        "hooks_overhead_ratio": round(fastest["full_all_hooks"] / fastest["full_metrics_only"], 4),
        "hooks_cpu_ratio": round(least_cpu["full_all_hooks"] / least_cpu["full_metrics_only"], 4),
        "seconds": {name: round(value, 3) for name, value in fastest.items()},
        "cpu_seconds": {name: round(value, 3) for name, value in least_cpu.items()},
        "examples": min(args.examples, NUM_EXAMPLES),
        "hooks": args.hooks,
        "image_size": SIZE,
    }
    if hooks is True and full is None:  # The whole default evaluation: what its statistics cost.
        figures.update(_statistics_costs(bench, kept["result"], fastest["full_all_hooks"]))
    return figures


def _statistics_costs(bench, result, evaluation_seconds) -> dict:
    """The bootstrap intervals every evaluation reports (core/results.py) and 20 slices, from
    the per-example statistics the full evaluation kept: their cost against the evaluation."""
    from core import results
    from metrics import bootstrap, slices
    from models.segmentation import Segmentation

    _, statistics_kept = results.statistics_of(result)
    start = time.perf_counter()
    bootstrap.intervals(statistics_kept, bench.task.from_sums)
    interval_seconds = time.perf_counter() - start
    voc = {"confusion": np.random.default_rng(0).integers(0, 50, (1449, 21 * 21))}  # VOC val's size.
    start = time.perf_counter()
    bootstrap.intervals(voc, Segmentation(21).from_sums)
    voc_seconds = time.perf_counter() - start
    masks = {f"slice_{k}": np.arange(NUM_EXAMPLES) % 20 == k for k in range(10)}  # 100 examples each,
    masks.update({f"part_{k}": np.arange(NUM_EXAMPLES) % 10 < k + 1 for k in range(10)})  # 200 to 2,000.
    start = time.perf_counter()
    slices.compute(statistics_kept, bench.task.from_sums, masks)
    slicing_seconds = time.perf_counter() - start
    print(f"20 slices of the {NUM_EXAMPLES} examples, metrics and intervals: {slicing_seconds:.2f} s")
    print(f"bootstrap intervals: {interval_seconds:.3f} s ({NUM_EXAMPLES} examples, 4 classes), "
          f"{voc_seconds:.3f} s (1,449 examples, 21 classes)")  # fmt: skip
    return {
        "intervals_cost_ratio": round(interval_seconds / evaluation_seconds, 4),
        "intervals_seconds_voc_size": round(voc_seconds, 3),
        "slicing_seconds_20_slices": round(slicing_seconds, 3),
        "slicing_cost_ratio": round(slicing_seconds / evaluation_seconds, 4),
    }


def _growth(args) -> dict:
    """The per-example hooks' update ops alone, in one session: their cost per example over
    2,000 and over 20,000 examples (what grows with the set: the collected values)."""
    import tensorflow as tf

    from metrics import summaries
    from models.segmentation import Segmentation

    task, batch = Segmentation(4, CLASS_NAMES), 64
    per_example, per_example_cpu = {}, {}
    for count in GROWTH_EXAMPLES:
        graph = tf.Graph()
        with graph.as_default():
            step = tf.compat.v1.placeholder(tf.int64, [])
            index = step * batch + tf.range(batch, dtype=tf.int64)
            labels = tf.random.stateless_uniform([batch, GROWTH_SIZE, GROWTH_SIZE], [1, 2], 0, 4, tf.int32)
            classes = tf.random.stateless_uniform([batch, GROWTH_SIZE, GROWTH_SIZE], [3, 4], 0, 4, tf.int32)
            predictions = {"classes": classes}
            ops = summaries.per_example_values(index, task.per_example(labels, predictions, None))
            ops.update(summaries.per_example_statistics(task.statistics(labels, predictions, None)))
            update = tf.group(*[update for _, update in ops.values()])
            values = [value for value, _ in ops.values()]
            with tf.compat.v1.Session(graph=graph) as session:
                rounds, cpu = [], []
                for _ in range(max(args.repeats, 10)):  # Cheap (a second at most): more rounds, a steadier fastest.
                    session.run(tf.compat.v1.local_variables_initializer())
                    start, start_cpu = time.perf_counter(), time.process_time()
                    for number in range(count // batch):
                        session.run(update, {step: number})
                    collected = session.run(values)
                    rounds.append(time.perf_counter() - start)
                    cpu.append(time.process_time() - start_cpu)
                assert len(collected[0]) == count // batch * batch
        per_example[count] = 1e6 * min(rounds) / count
        per_example_cpu[count] = 1e6 * min(cpu) / count
        print(f"per-example values and statistics of {count} examples at {GROWTH_SIZE}x{GROWTH_SIZE}: "
              f"{per_example[count]:.1f} us, {per_example_cpu[count]:.1f} CPU us an example "
              f"(fastest of {', '.join(f'{r:.2f}' for r in rounds)} s)", flush=True)  # fmt: skip
    small, large = GROWTH_EXAMPLES[:2]
    return {
        "hooks_per_example_us": {str(count): round(value, 1) for count, value in per_example.items()},
        "hooks_per_example_cpu_us": {str(count): round(value, 1) for count, value in per_example_cpu.items()},
        "hooks_growth_ratio": round(per_example[large] / per_example[small], 3),
        "hooks_growth_cpu_ratio": round(per_example_cpu[large] / per_example_cpu[small], 3),
        # The largest set over the smallest: a cost growing with the set shows most here.
        "hooks_growth_ratio_largest": round(per_example[GROWTH_EXAMPLES[-1]] / per_example[small], 3),
    }


def _sets(args) -> dict:
    """One evaluation set against two, at each checkpoint of a run: each variant its own
    Estimator, evaluating the same checkpoint every round as a training run evaluates each
    new one (the first round builds the graphs)."""
    from data.input import make_input_fn

    bench = _Bench(SETS_SIZE, SETS_EXAMPLES, args.batch_size)
    model_fn = bench.model_fn(True)
    first, second = (make_input_fn(bench.pattern, args.batch_size, SETS_SIZE, SETS_SIZE, bench.task) for _ in "ab")
    seconds = take_turns(
        {
            "one_set": bench.kept_evaluation(model_fn, first),
            "two_sets": bench.kept_evaluation(model_fn, first, second, max_eval_graphs=2),
            "two_sets_one_kept_graph": bench.kept_evaluation(model_fn, first, second),
        },
        max(args.repeats, 6),
    )
    fastest = {name: min(values) for name, values in seconds.items()}
    for name, values in seconds.items():
        print(f"{name:>23}: {fastest[name]:6.2f} s  (rounds: {', '.join(f'{v:.2f}' for v in values)})", flush=True)
    return {
        "second_set_cost_ratio": round((fastest["two_sets"] - fastest["one_set"]) / fastest["one_set"], 3),
        "one_kept_graph_vs_one_per_set": round(fastest["two_sets_one_kept_graph"] / fastest["two_sets"], 3),
        "sets_seconds": {name: round(value, 3) for name, value in fastest.items()},
    }


def _autotuned(input_fn):
    """`input_fn` with tf.data's autotuning on (data/input.py turns it off for evaluation)."""
    import tensorflow as tf

    def autotuned(*given, **named):
        options = tf.data.Options()
        options.autotune.enabled = True
        return input_fn(*given, **named).with_options(options)

    assert input_fn().options().autotune.enabled is False and autotuned().options().autotune.enabled is True
    return autotuned


def _autotune(args, stock: bool) -> dict:
    """Evaluation with tf.data's autotuning off (what data/input.py gives evaluation) against on,
    taking turns (ABBA). `stock` False (`--sections=autotune`): on a kept EVAL graph (400
    examples at 64x64, every hook), each variant its own Estimator evaluating the same
    checkpoint every round, as a training run evaluates each new one (the first round builds
    the graphs, not counted). `stock` True (`--sections=autotune_stock`, about 2.5 minutes a
    round): stock Estimator on the hooks section's 2,000 examples at 256x256, metrics only, a
    graph and session each round. Autotuning's cost comes and goes from round to round, so
    the figure is the median (`eval_autotune_off_speedup`, on's over off's; `_stock`), beside
    each round's seconds and cores in use. One core (`taskset -c 0`) is where it differs most."""
    from data.input import make_input_fn

    cpu = {}
    if stock:
        bench = _Bench(SIZE, NUM_EXAMPLES, args.batch_size)
        variants = {"autotune_off": bench.evaluation(False), "autotune_on": bench.evaluation(False, autotune=True)}
        seconds = take_turns(variants, args.repeats, cpu)
        skip = 0
    else:
        bench = _Bench(SETS_SIZE, SETS_EXAMPLES, args.batch_size)
        model_fn = bench.model_fn(True)
        off = make_input_fn(bench.pattern, args.batch_size, SETS_SIZE, SETS_SIZE, bench.task)
        variants = {
            "autotune_off": bench.kept_evaluation(model_fn, off, name="autotune_off"),
            "autotune_on": bench.kept_evaluation(model_fn, _autotuned(off), name="autotune_on"),
        }
        seconds = take_turns(variants, max(args.repeats, 8) + 1, cpu)
        skip = 1
    medians = {name: float(np.median(values[skip:])) for name, values in seconds.items()}
    for name, values in seconds.items():
        print(f"{name:>12}: median {medians[name]:6.2f} s  (rounds, s (cores): {_rounds(values, cpu[name])})",
              flush=True)  # fmt: skip
    suffix = "_stock" if stock else ""
    return {
        f"eval_autotune_off_speedup{suffix}": round(medians["autotune_on"] / medians["autotune_off"], 3),
        f"autotune_seconds{suffix}": {name: round(value, 3) for name, value in medians.items()},
        "cores": len(os.sched_getaffinity(0)),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=6, help="Rounds of each comparison (ABBA order).")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--sections", default="hooks,growth,sets,autotune")
    parser.add_argument("--examples", type=int, default=NUM_EXAMPLES, help="hooks: evaluate the first N examples.")
    parser.add_argument("--hooks", default="all", help=f"hooks: 'all' or some of {','.join(HOOKS)}.")
    args = parser.parse_args(argv)
    runtime.quiet()
    determinism.configure()
    figures = {}
    sections = args.sections.split(",")
    if "hooks" in sections:
        figures.update(_hooks(args))
    if "growth" in sections:
        figures.update(_growth(args))
    if "sets" in sections:
        figures.update(_sets(args))
    if "autotune" in sections:
        figures.update(_autotune(args, stock=False))
    if "autotune_stock" in sections:
        figures.update(_autotune(args, stock=True))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
