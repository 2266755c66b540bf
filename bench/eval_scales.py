"""Benchmark: what multi-scale and mirrored evaluation cost, against a single-scale evaluation.

DeepLab's `eval_scales` and `add_flipped_images` run the network once per scale and
mirror and average the probabilities. Here a DeepLab-style net is trained briefly
(`--steps`) on the synthetic shapes at 64x64 with random scaling (0.5 to 2.0, so
it has seen objects at several sizes), then one checkpoint is evaluated on the val
split under each setting, the settings taking turns `--repeats` times. For each
it prints the median seconds, the ratio to the single-scale evaluation and the mean
IoU. The last line is one JSON object.

    .venv/bin/python bench/eval_scales.py [--steps=600] [--repeats=2]
"""

import argparse
import io
import json
import os
import statistics
import tempfile
import time
from contextlib import redirect_stdout

from common import runtime

runtime.hide_native_logs()

from common import determinism  # noqa: E402  After the line above: it loads TensorFlow.

SIZE = 64
NUM_TRAIN, NUM_VAL = 1000, 200
DATA_DIR = os.path.join(runtime.REPO_ROOT, "datasets", "bench_eval_scales")
CLASS_NAMES = ["background", "circle", "square", "triangle"]
SETTINGS = {
    "1": ([1.0], False),
    "1+flip": ([1.0], True),
    "0.75,1,1.25": ([0.75, 1.0, 1.25], False),
    "0.75,1,1.25+flip": ([0.75, 1.0, 1.25], True),
    "0.5..1.75+flip": ([0.5, 0.75, 1.0, 1.25, 1.5, 1.75], True),  # DeepLab's PASCAL test setting.
}


def _dataset():
    from data import synthetic

    if not os.path.exists(os.path.join(DATA_DIR, "dataset.json")):
        synthetic.write_dataset(DATA_DIR, NUM_TRAIN, NUM_VAL, SIZE, SIZE, num_shards=2)
    return os.path.join(DATA_DIR, "train-*.tfrecord"), os.path.join(DATA_DIR, "val-*.tfrecord")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    runtime.quiet()
    determinism.configure()
    import tensorflow as tf

    from data.augment import FlipLeftRight
    from data.input import make_input_fn
    from data.preprocess import ScaleAndCrop
    from models import build_model_fn
    from models.deeplab import DeepLab
    from models.segmentation import Segmentation

    train_files, val_files = _dataset()
    task = Segmentation(4, CLASS_NAMES, confusion_summary=False)
    model_dir = tempfile.mkdtemp(prefix="bench_eval_scales_")
    config = tf.estimator.RunConfig(tf_random_seed=0, log_step_count_steps=None)
    train_input = make_input_fn(
        train_files,
        16,
        SIZE,
        SIZE,
        task,
        training=True,
        preprocess=ScaleAndCrop(min_scale_factor=0.5, max_scale_factor=2.0, scale_factor_step_size=0.25),
        augmentations=[FlipLeftRight()],
    )
    start = time.perf_counter()
    tf.estimator.Estimator(build_model_fn(DeepLab(), task, per_example=False), model_dir, config).train(
        train_input, max_steps=args.steps
    )
    print(f"trained {args.steps} steps in {time.perf_counter() - start:.0f}s")
    checkpoint = tf.train.latest_checkpoint(model_dir)
    val_input = make_input_fn(val_files, 32, SIZE, SIZE, task)
    seconds = {name: [] for name in SETTINGS}
    mean_iou = {}
    for _ in range(args.repeats):
        for name, (scales, flip) in SETTINGS.items():
            model_fn = build_model_fn(DeepLab(), task, per_example=False, eval_scales=scales, add_flipped_images=flip)
            estimator = tf.estimator.Estimator(model_fn, model_dir, config)
            start = time.perf_counter()
            with redirect_stdout(io.StringIO()):
                result = estimator.evaluate(val_input, checkpoint_path=checkpoint, name="b")
            seconds[name].append(time.perf_counter() - start)
            assert result["num_examples"] == NUM_VAL, result["num_examples"]
            mean_iou[name] = float(result["mean_iou"])
    median = {name: statistics.median(values) for name, values in seconds.items()}
    base = median["1"]
    for name in SETTINGS:
        print(f"{name:>18}: {median[name]:6.2f} s  x{median[name] / base:5.2f}  mean IoU {mean_iou[name]:.4f}")
    print(
        json.dumps(
            {
                "cost_ratio": {name: round(median[name] / base, 3) for name in SETTINGS},
                "mean_iou": {name: round(value, 4) for name, value in mean_iou.items()},
                "seconds": {name: round(value, 3) for name, value in median.items()},
                "examples": NUM_VAL,
                "image_size": SIZE,
                "train_steps": args.steps,
            }
        )
    )


if __name__ == "__main__":
    main()
