"""Benchmark: what a subset and the evaluation hooks cost, against a full evaluation.

On a synthetic val split of 2,000 examples at 256x256 (written once to
datasets/bench_eval_256/), with the default U-Net at a one-step checkpoint:
  - `subset_1pct_cost_ratio`: `Estimator.evaluate` of 20 examples (1%, through the
    input_fn's enumerate/filter) / a full evaluation of the 2,000;
  - `hooks_overhead_ratio`: a full evaluation with every hook and summary
    (16 image panels, per-example IoU, confusion image and table, per-class
    logging every 20 batches) / the same evaluation with the metrics only;
  - `intervals_cost_ratio`: the 95% bootstrap intervals every evaluation reports
    (1,000 resamples of the per-example statistics) / that full evaluation; and their
    seconds at PASCAL VOC val's size (1,449 examples, 21 classes).
Each evaluation is timed end to end (graph, session, restore, every batch), the
variants taking turns; the figure is the median over `--repeats`. The last line
is one JSON object.

    .venv/bin/python bench/eval.py [--repeats=2]
"""

import argparse
import io
import json
import os
import statistics
import time
from contextlib import redirect_stdout

import numpy as np

from common import determinism, runtime

SIZE = 256
NUM_EXAMPLES = 2000
DATA_DIR = os.path.join(runtime.REPO_ROOT, "datasets", f"bench_eval_{SIZE}")
CLASS_NAMES = ["background", "circle", "square", "triangle"]


def _dataset():
    from data import synthetic, writer

    marker = os.path.join(DATA_DIR, "done")
    if not os.path.exists(marker):
        examples = (synthetic.example("segmentation", 0, "val", i, SIZE, SIZE) for i in range(NUM_EXAMPLES))
        writer.write_shards(examples, NUM_EXAMPLES, os.path.join(DATA_DIR, "val"), 8)
        open(marker, "w").close()
    return os.path.join(DATA_DIR, "val-*.tfrecord")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=32)
    args = parser.parse_args(argv)
    runtime.quiet()
    determinism.configure()
    import tempfile

    import tensorflow as tf

    from data.input import make_input_fn
    from hooks.eval_logging import per_class_logging
    from models import build_model_fn
    from models.segmentation import Segmentation
    from models.unet import UNet

    pattern = _dataset()
    model_dir = tempfile.mkdtemp(prefix="bench_eval_")

    def model_fn(with_hooks):
        if not with_hooks:
            return build_model_fn(UNet(), Segmentation(4, CLASS_NAMES, confusion_summary=False), per_example=False)
        return build_model_fn(
            UNet(),
            Segmentation(4, CLASS_NAMES),
            summary_indices=list(range(0, 2000, 125)),
            evaluation_hooks=[per_class_logging(every_n_steps=20)],
        )

    task = Segmentation(4, CLASS_NAMES)

    def input_fn(subset=None):
        return make_input_fn(pattern, args.batch_size, SIZE, SIZE, task, subset=subset)

    tf.estimator.Estimator(model_fn(False), model_dir).train(
        make_input_fn(pattern, 4, SIZE, SIZE, task, training=True), max_steps=1
    )
    checkpoint = tf.train.latest_checkpoint(model_dir)
    subset = list(range(0, NUM_EXAMPLES, 100))  # 20 examples: 1%.
    variants = {
        "full_metrics_only": (model_fn(False), input_fn()),
        "subset_1pct": (model_fn(False), input_fn(subset)),
        "full_all_hooks": (model_fn(True), input_fn()),
    }
    seconds = {name: [] for name in variants}
    kept_result = None
    for _ in range(args.repeats):
        for name, (fn, inputs) in variants.items():
            estimator = tf.estimator.Estimator(fn, model_dir)
            start = time.perf_counter()
            with redirect_stdout(io.StringIO()):  # The logging hook's lines.
                result = estimator.evaluate(inputs, checkpoint_path=checkpoint, name=name)
            kept_result = result if name == "full_all_hooks" else kept_result
            seconds[name].append(time.perf_counter() - start)
            expected = len(subset) if name == "subset_1pct" else NUM_EXAMPLES
            assert result["num_examples"] == expected, (name, result["num_examples"])
    median = {name: statistics.median(values) for name, values in seconds.items()}
    # The bootstrap intervals every evaluation now reports (core/results.py), from the
    # per-example statistics the full evaluation kept: their cost against the evaluation.
    from core import results
    from metrics import bootstrap

    _, kept = results.statistics_of(kept_result)
    start = time.perf_counter()
    bootstrap.intervals(kept, task.from_sums)
    interval_seconds = time.perf_counter() - start
    voc = {"confusion": np.random.default_rng(0).integers(0, 50, (1449, 21 * 21))}  # VOC val's size.
    start = time.perf_counter()
    bootstrap.intervals(voc, Segmentation(21).from_sums)
    voc_seconds = time.perf_counter() - start
    print(f"bootstrap intervals: {interval_seconds:.3f} s ({NUM_EXAMPLES} examples, 4 classes), "
          f"{voc_seconds:.3f} s (1,449 examples, 21 classes)")  # fmt: skip
    for name, value in median.items():
        print(f"{name:>18}: {value:7.2f} s")
    print(
        json.dumps(
            {
                "subset_1pct_cost_ratio": round(median["subset_1pct"] / median["full_metrics_only"], 4),
                "hooks_overhead_ratio": round(median["full_all_hooks"] / median["full_metrics_only"], 4),
                "intervals_cost_ratio": round(interval_seconds / median["full_all_hooks"], 4),
                "intervals_seconds_voc_size": round(voc_seconds, 3),
                "seconds": {name: round(value, 3) for name, value in median.items()},
                "examples": NUM_EXAMPLES,
                "image_size": SIZE,
            }
        )
    )


if __name__ == "__main__":
    main()
