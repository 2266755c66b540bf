"""Benchmark: start-up to the first training step as the dataset grows, with and without
the shard indexes (`data/records_index.py`).

For each of `--sizes` training records (1,000, 10,000, 100,000 by default: 16x16 images
in 10 shards, written once under `datasets/bench_startup_<n>/`; the val split is 100
records):

- `input_fns_s`: building the train and eval input_fns, the part of start-up that
  reads the shards: with the indexes the converter writes, and, as the peer measured
  in the same run, with them hidden (every record header read, every val record
  parsed);
- `startup_to_first_step_s`: a fresh process (the indexes in place), from its start
  to the end of its first training step with the template's Estimator (imports,
  input_fns, graph, session, one step).

Then the cost of a resume, on the largest dataset: the same, from a checkpoint at 1
epoch and at 10 epochs (`global_step * batch` records into the stream); the stream
starts at its epoch and skips within it only (`resume_cost_ratio`, 10 over 1).

Prints a table and, last, one JSON object: start-up per size, its growth from the
smallest size to the largest, the index's speed-up at the largest, and the resume
cost ratio.

    .venv/bin/python bench/startup.py [--sizes=1000,10000,100000]
"""

import argparse
import json
import os
import subprocess
import sys
import time

from core import runtime

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
    from models.tasks import Segmentation

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
from core import runtime
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    args = parser.parse_args(argv)
    runtime.quiet()
    import tempfile

    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    for size in sizes:
        root = _dataset(size)
        indexed = _input_fns(root)
        restore = _hidden_indexes(root)
        try:
            scanned = _input_fns(root)
        finally:
            restore()
        first = _startup_to_first_step(root, tempfile.mkdtemp(prefix="bench_startup_"))
        rows.append({"records": size, "input_fns_s": indexed, "input_fns_scan_s": scanned, "first_step_s": first})
        print(json.dumps(rows[-1]), flush=True)
    print(f"\n{'records':>8s} {'input_fns (index)':>18s} {'input_fns (scan)':>17s} {'start to first step':>20s}")
    for r in rows:
        print(f"{r['records']:8d} {r['input_fns_s']:17.3f}s {r['input_fns_scan_s']:16.3f}s {r['first_step_s']:19.1f}s")
    resumed = {}
    for epochs in (1, 10):
        model_dir = tempfile.mkdtemp(prefix="bench_resume_")
        _checkpoint_at(model_dir, root, epochs * sizes[-1] // BATCH)
        resumed[epochs] = _startup_to_first_step(root, model_dir)
        print(f"resume at {epochs:2d} epoch(s) of {sizes[-1]} records: {resumed[epochs]:.1f} s to the first step")
    summary = {
        "startup_to_first_step_s": {str(r["records"]): round(r["first_step_s"], 2) for r in rows},
        "startup_growth_largest_over_smallest": round(rows[-1]["first_step_s"] / rows[0]["first_step_s"], 3),
        "input_fns_index_speedup_at_largest": round(rows[-1]["input_fns_scan_s"] / rows[-1]["input_fns_s"], 1),
        "resume_cost_ratio": round(resumed[10] / resumed[1], 3),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
