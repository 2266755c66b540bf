"""Keeps the best checkpoint aside, so `keep_checkpoint_max` cannot delete it.

`BestCheckpointKeeper` is an Exporter: `train_and_evaluate` hands it every
evaluation's result with the checkpoint it came from. When the configured metric
improves, it copies that checkpoint's files to `model_dir/best/` (with a
`checkpoint` state file, so `tf.train.latest_checkpoint(model_dir/best)` finds it)
and writes `model_dir/best.json`. After a restart it reads `best.json` back, or,
when that is missing, rebuilds the best value from `eval/results.jsonl`, so a worse
checkpoint never replaces a better one.
"""

import json
import math
import os
import shutil
import sys

import tensorflow as tf

from core import results
from core.errors import ConfigError

BEST_DIR = "best"
BEST_FILE = "best.json"


def is_better(value, best, higher_is_better: bool) -> bool:
    """Whether `value` improves on `best` (None: nothing yet). NaN never improves."""
    if value is None or math.isnan(value):
        return False
    if best is None:
        return True
    return value > best if higher_is_better else value < best


def read_best(model_dir: str):
    """The content of `best.json`, or None."""
    path = os.path.join(model_dir, BEST_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def best_from_results(eval_dir: str, metric: str, higher_is_better: bool, before_step=None):
    """The best results.jsonl record for `metric` (before `before_step` if given), or None."""
    best = None
    for record in results.read_records(eval_dir):
        if before_step is not None and record["global_step"] >= before_step:
            continue
        value = record["metrics"].get(metric)
        if is_better(value, None if best is None else best["metrics"][metric], higher_is_better):
            best = record
    return best


def keep_checkpoint(model_dir: str, checkpoint_path: str, metric: str, value: float, global_step: int) -> dict:
    """Copies `checkpoint_path`'s files to `model_dir/best/` and writes best.json.

    The copy is made in a temporary folder and swapped in, so a crash leaves
    either the old best or the new one, never a mix.
    """
    best_dir = os.path.join(model_dir, BEST_DIR)
    staging = best_dir + ".tmp"
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    files = tf.io.gfile.glob(checkpoint_path + ".*")
    if not any(name.endswith(".index") for name in files):
        raise FileNotFoundError(f"checkpoint {checkpoint_path} is gone; cannot keep it as the best")
    for name in files:
        shutil.copy2(name, staging)
    basename = os.path.basename(checkpoint_path)
    with open(os.path.join(staging, "checkpoint"), "w") as f:
        f.write(f'model_checkpoint_path: "{basename}"\nall_model_checkpoint_paths: "{basename}"\n')
    shutil.rmtree(best_dir, ignore_errors=True)
    os.replace(staging, best_dir)
    best = {
        "global_step": int(global_step),
        "metric": metric,
        "value": float(value),
        "checkpoint": os.path.join(BEST_DIR, basename),
        "source": checkpoint_path,
    }
    tmp = os.path.join(model_dir, BEST_FILE + ".tmp")
    with open(tmp, "w") as f:
        json.dump(best, f, indent=2)
    os.replace(tmp, os.path.join(model_dir, BEST_FILE))
    return best


class BestCheckpointKeeper(tf.estimator.Exporter):
    """An Exporter that keeps the best checkpoint's files aside (see module doc)."""

    def __init__(self, model_dir: str, metric: str, higher_is_better: bool = True, stream=None):
        self._model_dir = model_dir
        self._metric = metric
        self._higher_is_better = higher_is_better
        self._stream = stream or sys.stdout
        self._best = None
        self._loaded = False

    @property
    def name(self):
        return "best_checkpoint"

    def _load(self, current_step):
        best = read_best(self._model_dir)
        if best is not None and best.get("metric") == self._metric:
            self._best = best["value"]
        else:
            # The ResultsReporter has already recorded the current evaluation: leave it out.
            eval_dir = os.path.join(self._model_dir, "eval")
            record = best_from_results(eval_dir, self._metric, self._higher_is_better, before_step=current_step)
            self._best = None if record is None else record["metrics"][self._metric]
        self._loaded = True

    def export(self, estimator, export_path, checkpoint_path, eval_result, is_the_final_export):
        del estimator, export_path, is_the_final_export
        if not self._loaded:
            self._load(int(eval_result["global_step"]))
        if self._metric not in eval_result:
            known = ", ".join(sorted(k for k in eval_result if "/" not in k and k != "global_step"))
            raise ConfigError(f"BEST_METRIC {self._metric!r} is not a metric of this task; it has: {known}")
        value = float(eval_result[self._metric])
        if not is_better(value, self._best, self._higher_is_better):
            return None
        keep_checkpoint(self._model_dir, checkpoint_path, self._metric, value, eval_result["global_step"])
        self._best = value
        print(f"best {self._metric} so far: {value:.4f} at step {eval_result['global_step']}", file=self._stream)
        return os.path.join(self._model_dir, BEST_DIR)
