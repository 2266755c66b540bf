"""Benchmark: what grows with the job. Start-up to the first training step and time per
example as the dataset grows, a resume's cost, and time per example as the images grow.
`bench/train.py` runs all of it (its JSON carries these figures); alone:

    .venv/bin/python bench/growth.py [--sizes=1000,10000,100000] [--image_sizes=32,64,128]

Dataset size (`--sizes` training records, 16x16 images in 10 shards, written once under
`datasets/bench_startup_<n>/`; the val split is 100 records; a small U-Net):

- `input_fns_s`: building the train and eval input_fns, the part of start-up that reads
  the shards: with the indexes the converter writes, and, as the peer measured in the
  same run, with them hidden (every record header read, every val record parsed);
- `startup_to_first_step_s`: a fresh process (the indexes in place), from its start to
  the end of its first training step with the template's Estimator (imports, input_fns,
  graph, session, one step);
- training and evaluation microseconds per example, steady state (after the first
  batches), training from the shuffled stream, evaluation over the whole training split.

A resume, on the largest dataset: the same fresh process from a checkpoint 1.9 epochs and
10.9 epochs into the stream (`resume_cost_ratio`, 10.9 over 1.9). The input_fn starts at
the checkpoint's epoch without reading the ones before it, and skips the 90% of that epoch
already trained on, undecoded: the longest skip a resume can have, nearly.

Image size (`--image_sizes`, the default U-Net of configs/synthetic.gin on synthetic
shapes, 320 train and 256 val images each): training and evaluation microseconds per
example, and per example per 1,000 pixels, which stays flat if time is linear in pixels.

Prints tables and, last, one JSON object.
"""

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import time

from common import runtime

SIZE = 16
VAL = 100
SHARDS = 10
BATCH = 4  # TRAIN_BATCH_SIZE in FIRST_STEP.


def _dataset(num_train: int) -> str:
    from data import synthetic

    root = os.path.join(runtime.REPO_ROOT, "datasets", f"bench_startup_{num_train}")
    if not os.path.exists(os.path.join(root, "dataset.json")):
        synthetic.write_dataset(root, num_train, VAL, SIZE, SIZE, num_shards=SHARDS)
    return root


def _input_fns(root: str):
    from data import input as data_input
    from models.segmentation import Segmentation

    task = Segmentation(4)
    start = time.perf_counter()
    data_input.make_input_fn(os.path.join(root, "train-*"), 4, SIZE, SIZE, task, training=True)
    data_input.make_input_fn(os.path.join(root, "val-*"), 4, SIZE, SIZE, task)
    return time.perf_counter() - start


def _hidden_indexes(root: str):
    """Renames the indexes away (and back, by calling the result)."""
    from data import records_index

    aside = os.path.join(root, "hidden_indexes")
    os.makedirs(aside, exist_ok=True)
    names = [n for n in os.listdir(root) if records_index.is_index(n)]
    for name in names:
        os.rename(os.path.join(root, name), os.path.join(aside, name))
    return lambda: [os.rename(os.path.join(aside, name), os.path.join(root, name)) for name in names]


FIRST_STEP = """
import sys, time
spawned = float(sys.argv[1])
from common import runtime
runtime.quiet()
import tensorflow as tf
from core import configurables
configurables.parse_gin(["configs/synthetic.gin"], [
    f"TRAIN_FILES = '{sys.argv[2]}/train-*'", f"VAL_FILES = '{sys.argv[2]}/val-*'",
    "IMAGE_HEIGHT = SIZE_", "IMAGE_WIDTH = SIZE_", "TRAIN_BATCH_SIZE = 4", "unet.base_filters = 4", "unet.depth = 2"])
import gin
model_fn = gin.query_parameter("train_and_evaluate.model_fn").scoped_configurable_fn()
train_fn = gin.query_parameter("train_and_evaluate.train_input_fn").scoped_configurable_fn()
gin.query_parameter("train_and_evaluate.eval_input_fn").scoped_configurable_fn()
class First(tf.compat.v1.train.SessionRunHook):
    def after_run(self, context, values):
        print(time.time() - spawned, flush=True)
        context.request_stop()
save = sys.argv[4] == "1"
every = 1 if save else None
config = tf.estimator.RunConfig(model_dir=sys.argv[3], save_checkpoints_steps=every, save_checkpoints_secs=None)
estimator = tf.estimator.Estimator(model_fn, config=config)
estimator.train(train_fn, hooks=[] if save else [First()], max_steps=(estimator.latest_checkpoint() and 10**9) or 1)
""".replace("SIZE_", str(SIZE))


def _startup_to_first_step(root: str, model_dir: str, save: bool = False):
    """Seconds from a fresh process's start to the end of its first step (None with `save`:
    one step, checkpointed)."""
    env = dict(os.environ, PYTHONPATH=runtime.REPO_ROOT)
    spawned = time.time()
    run = subprocess.run(
        [sys.executable, "-c", FIRST_STEP, str(spawned), root, model_dir, str(int(save))],
        cwd=runtime.REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if run.returncode:
        raise SystemExit(f"the timed process failed:\n{run.stderr[-3000:]}")
    return None if save else float(run.stdout.strip().splitlines()[-1])


def _checkpoint_at(model_dir: str, root: str, step: int):
    """A model dir whose checkpoint is the template's network at global step `step`."""
    import tensorflow as tf

    _startup_to_first_step(root, model_dir, save=True)  # One step, saved: every variable.
    source = tf.train.latest_checkpoint(model_dir)
    with tf.Graph().as_default():
        variables = [
            tf.compat.v1.Variable(
                tf.constant(step, tf.int64) if name == "global_step" else tf.train.load_variable(source, name),
                name=name,
            )
            for name, _ in tf.train.list_variables(source)
        ]
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            tf.compat.v1.train.Saver(variables).save(session, os.path.join(model_dir, "model.ckpt"), global_step=step)


def _timed_runs():
    """A hook that records when each `session.run` ends and stops after `stop_after` runs."""
    import tensorflow as tf

    class Times(tf.compat.v1.train.SessionRunHook):
        def __init__(self, stop_after=None):
            self.ends, self.stop_after = [], stop_after

        def after_run(self, context, values):
            self.ends.append(time.perf_counter())
            if self.stop_after and len(self.ends) >= self.stop_after:
                context.request_stop()

    return Times


def per_example_us(bindings, model_dir, warmup=10, steps=60):
    """Steady-state microseconds per example of training (after `warmup` steps) and of a
    whole evaluation of VAL_FILES (after its first batch), configs/synthetic.gin with
    `bindings`, in this process."""
    import gin
    import tensorflow as tf

    from core import configurables

    with gin.unlock_config():  # An earlier Estimator in this process may have locked it.
        gin.clear_config()
        configurables.parse_gin([os.path.join(runtime.REPO_ROOT, "configs", "synthetic.gin")], bindings)
    model_fn = gin.query_parameter("train_and_evaluate.model_fn").scoped_configurable_fn()
    train_fn = gin.query_parameter("train_and_evaluate.train_input_fn").scoped_configurable_fn()
    eval_fn = gin.query_parameter("train_and_evaluate.eval_input_fn").scoped_configurable_fn()
    batch, eval_batch = gin.query_parameter("%TRAIN_BATCH_SIZE"), gin.query_parameter("%EVAL_BATCH_SIZE")
    config = tf.estimator.RunConfig(model_dir=model_dir, tf_random_seed=0, save_checkpoints_steps=warmup + steps,
                                    save_checkpoints_secs=None, log_step_count_steps=None)  # fmt: skip
    estimator = tf.estimator.Estimator(model_fn, config=config)
    Times = _timed_runs()
    train = Times(stop_after=warmup + steps)
    estimator.train(train_fn, hooks=[train], max_steps=warmup + steps)
    train_us = 1e6 * (train.ends[-1] - train.ends[warmup - 1]) / (steps * batch)
    evaluation = Times()
    with contextlib.redirect_stdout(io.StringIO()):
        estimator.evaluate(eval_fn, hooks=[evaluation], name="growth")
    num_eval = eval_fn.num_examples
    eval_us = 1e6 * (evaluation.ends[-1] - evaluation.ends[0]) / (num_eval - min(eval_batch, num_eval))
    return train_us, eval_us


TINY_NET = ["TRAIN_BATCH_SIZE = 16", "unet.base_filters = 4", "unet.depth = 2"]


def _by_records(sizes, work):
    rows = []
    for size in sizes:
        root = _dataset(size)
        indexed = _input_fns(root)
        restore = _hidden_indexes(root)
        try:
            scanned = _input_fns(root)
        finally:
            restore()
        first = _startup_to_first_step(root, os.path.join(work, f"startup_{size}"))
        files = [f"TRAIN_FILES = '{root}/train-*'", f"VAL_FILES = '{root}/train-*'"]  # Evaluate all of them.
        size_bindings = [f"IMAGE_HEIGHT = {SIZE}", f"IMAGE_WIDTH = {SIZE}"]
        train_us, eval_us = per_example_us(files + size_bindings + TINY_NET, os.path.join(work, f"records_{size}"))
        rows.append({"records": size, "input_fns_s": indexed, "input_fns_scan_s": scanned, "first_step_s": first,
                     "train_us": train_us, "eval_us": eval_us})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    print(f"\n{'records':>8s} {'input_fns (index)':>18s} {'input_fns (scan)':>17s} {'start to first step':>20s}"
          f" {'train us/example':>17s} {'eval us/example':>16s}")  # fmt: skip
    for r in rows:
        print(f"{r['records']:8d} {r['input_fns_s']:17.3f}s {r['input_fns_scan_s']:16.3f}s {r['first_step_s']:19.1f}s"
              f" {r['train_us']:17.0f} {r['eval_us']:16.0f}")  # fmt: skip
    return rows


def _image_dataset(size: int) -> str:
    from data import synthetic

    root = os.path.join(runtime.REPO_ROOT, "datasets", f"bench_growth_{size}")
    if not os.path.exists(os.path.join(root, "dataset.json")):
        synthetic.write_dataset(root, 320, 256, size, size, num_shards=4)
    return root


def _by_image_size(image_sizes, work):
    rows = []
    for size in image_sizes:
        root = _image_dataset(size)
        bindings = [f"TRAIN_FILES = '{root}/train-*'", f"VAL_FILES = '{root}/val-*'",
                    f"IMAGE_HEIGHT = {size}", f"IMAGE_WIDTH = {size}"]  # fmt: skip
        train_us, eval_us = per_example_us(bindings, os.path.join(work, f"image_{size}"), warmup=5, steps=15)
        rows.append({"image": size, "train_us": train_us, "eval_us": eval_us})
        print(json.dumps(rows[-1]), flush=True)
    columns = f"{'train us/example':>17s} {'per 1k pixels':>14s} {'eval us/example':>16s} {'per 1k pixels':>14s}"
    print(f"\n{'image':>8s} {columns}")
    for r in rows:
        kpixels = r["image"] ** 2 / 1000
        print(f"{r['image']:5d}px {r['train_us']:17.0f} {r['train_us'] / kpixels:14.1f}"
              f" {r['eval_us']:16.0f} {r['eval_us'] / kpixels:14.1f}")  # fmt: skip
    return rows


def measure(sizes=(1000, 10000, 100000), image_sizes=(32, 64, 128)):
    """Runs every measurement above; returns the summary (the JSON object's keys)."""
    import tempfile

    work = tempfile.mkdtemp(prefix="bench_growth_")
    rows = _by_records(sizes, work)
    resumed = {}
    for epochs in (1, 10):
        model_dir = os.path.join(work, f"resume_{epochs}")
        # 90% into the epoch after: the skip inside the epoch is near its longest.
        _checkpoint_at(model_dir, _dataset(sizes[-1]), int((epochs + 0.9) * sizes[-1]) // BATCH)
        resumed[epochs] = _startup_to_first_step(_dataset(sizes[-1]), model_dir)
        print(f"resume at {epochs + 0.9:4.1f} epochs of {sizes[-1]} records: {resumed[epochs]:.1f} s to the first step")
    images = _by_image_size(image_sizes, work)

    def ratio(values):  # Largest over smallest.
        return round(values[-1] / values[0], 3)

    return {
        "startup_to_first_step_s": {str(r["records"]): round(r["first_step_s"], 2) for r in rows},
        "startup_growth_largest_over_smallest": ratio([r["first_step_s"] for r in rows]),
        "input_fns_index_speedup_at_largest": round(rows[-1]["input_fns_scan_s"] / rows[-1]["input_fns_s"], 1),
        "resume_cost_ratio": round(resumed[10] / resumed[1], 3),
        "train_us_per_example_by_records": {str(r["records"]): round(r["train_us"]) for r in rows},
        "eval_us_per_example_by_records": {str(r["records"]): round(r["eval_us"]) for r in rows},
        "train_us_per_kpixel_by_image": {
            str(r["image"]): round(r["train_us"] * 1000 / r["image"] ** 2, 1) for r in images
        },
        "eval_us_per_kpixel_by_image": {
            str(r["image"]): round(r["eval_us"] * 1000 / r["image"] ** 2, 1) for r in images
        },
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--image_sizes", default="32,64,128")
    args = parser.parse_args(argv)
    runtime.quiet()
    summary = measure([int(s) for s in args.sizes.split(",")], [int(s) for s in args.image_sizes.split(",")])
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
