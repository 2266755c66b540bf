"""Keeps the best checkpoint aside, so `keep_checkpoint_max` cannot delete it.

`BestCheckpointKeeper` is an Exporter: `train_and_evaluate` hands it every
evaluation's result with the checkpoint it came from. When the configured metric
improves, it copies that checkpoint's files to `model_dir/best/` (with a
`checkpoint` state file, so `tf.train.latest_checkpoint(model_dir/best)` finds it)
and writes `model_dir/best.json`. After a restart it reads `best.json` back, or,
when that is missing (or names another metric or evaluation set), rebuilds the best value
from the followed set's `results.jsonl` (`eval/`, or `eval_<BEST_SET>/`), so a worse
checkpoint never replaces a better one.
"""

import functools
import json
import math
import os
import shutil
import sys

import tensorflow as tf

from common import files
from common.errors import ConfigError, RunError
from core import results
from metrics import bootstrap

BEST_DIR = "best"
BEST_FILE = "best.json"


def is_better(value, best, higher_is_better: bool) -> bool:
    """Whether `value` improves on `best` (None: nothing yet). NaN never improves."""
    if value is None or math.isnan(value):
        return False
    if best is None:
        return True
    return value > best if higher_is_better else value < best


class BetterByMargin:
    """A checkpoint becomes the best only if it beats it by more than `margin`, in the
    metric's units (`BEST_RULE = @better_by_margin()`, `better_by_margin.margin = 0.005`):
    one line of gin, no cost; the margin is a guess at the noise."""

    def __init__(self, margin: float = 0.0):
        if margin < 0:
            raise ConfigError(f"better_by_margin: margin must be >= 0, got {margin}")
        self.margin = margin

    def __call__(self, value, best, higher_is_better, **unused):
        if value is None or math.isnan(value):
            return False
        return is_better(value - self.margin if higher_is_better else value + self.margin, best, higher_is_better)


class SignificantlyBetter:
    """A checkpoint becomes the best only if it is better on the paired bootstrap: the
    `level` interval of (new - best) over resamples of the evaluated examples lies wholly
    on the better side of 0 (`BEST_RULE = @significantly_better()`). It reads the two
    evaluations' `statistics-<step>.npz` (`metrics/bootstrap.py`), about 0.1 s for 400
    examples of 4 classes; the metric must be one their task's `from_sums` gives (the
    headline is). It keeps the earliest checkpoint that nothing later beat for sure, not
    the luckiest one."""

    def __init__(self, level: float = 0.95, num_resamples: int = 1000):
        self.level, self.num_resamples = level, num_resamples

    def __call__(self, value, best, higher_is_better, metric=None, eval_dir=None, step=None, best_step=None):
        if not is_better(value, best, higher_is_better):
            return False
        if best_step is None or step is None:  # Nothing to pair with: any improvement.
            return True
        files = [results.statistics_path(eval_dir, s) for s in (best_step, step)]
        for path in files:
            if not os.path.exists(path):
                raise ConfigError(f"BEST_RULE significantly_better: no per-example statistics {path}")
        before, after = (results.read_statistics(path) for path in files)
        compared = bootstrap.paired_difference(
            before["statistics"], after["statistics"], results.task_of(after).from_sums, self.level, self.num_resamples
        )
        if metric not in compared:
            known = ", ".join(sorted(compared))
            raise ConfigError(f"BEST_RULE significantly_better: {metric!r} has no per-example statistics ({known})")
        low, high = compared[metric]["low"], compared[metric]["high"]
        return low is not None and (low > 0 if higher_is_better else high < 0)


class BestCheckpoint:
    """What "best" means: it picks the checkpoint kept in `best/`, the SavedModel in
    `export/best/`, and when early stopping stops (gin: `best_checkpoint.*`).

    Args:
      metric: the metric compared (BEST_METRIC); None: the task's headline.
      higher_is_better: its direction (HIGHER_IS_BETTER); None: the task knows.
      rule: when a checkpoint replaces the best (BEST_RULE): None for any improvement,
        `BetterByMargin` or `SignificantlyBetter`.
      early_stopping_evals: stop when `metric` has not improved for this many
        evaluations (0: never).
      eval_set: the evaluation set (gin's `EVAL_SETS`) whose `metric` counts (BEST_SET);
        None: the first.
    """

    def __init__(self, metric: str = None, higher_is_better: bool = None, rule=None, early_stopping_evals: int = 0,
                 eval_set: str = None):  # fmt: skip
        self.metric, self.higher_is_better, self.rule = metric, higher_is_better, rule
        self.early_stopping_evals, self.eval_set = early_stopping_evals, eval_set

    def for_task(self, task) -> "BestCheckpoint":
        """This choice with the metric and its direction filled in from `task` where unset."""
        metric = self.metric or task.headline
        higher = task.higher_is_better(metric) if self.higher_is_better is None else self.higher_is_better
        return BestCheckpoint(metric, higher, self.rule, self.early_stopping_evals, self.eval_set)

    def early_stopping_hook(self, estimator, eval_every_steps: int, eval_dir: str = None):
        """Estimator's own stop-if-no-improvement hook for this choice (reading the evaluations
        of `eval_dir`, default the estimator's `eval/`), or None when off."""
        if not self.early_stopping_evals:
            return None
        stop_if = (
            tf.estimator.experimental.stop_if_no_increase_hook
            if self.higher_is_better
            else tf.estimator.experimental.stop_if_no_decrease_hook
        )
        return stop_if(
            estimator,
            self.metric,
            max_steps_without_increase=self.early_stopping_evals * eval_every_steps,
            eval_dir=eval_dir,
            run_every_secs=None,
            run_every_steps=eval_every_steps,
        )


def improves(rule, value, best, higher_is_better, metric, eval_dir, step, best_step) -> bool:
    """Whether the evaluation of `step` (`value`) replaces the best (`best` at `best_step`) under
    `rule` (None: any improvement)."""
    if rule is None:
        return is_better(value, best, higher_is_better)
    return rule(value, best, higher_is_better, metric=metric, eval_dir=eval_dir, step=step, best_step=best_step)


def read_best(model_dir: str, log=print):
    """The content of `best.json`, or None (a torn one is moved aside, with one line: the
    keeper then rebuilds the best from the followed set's `results.jsonl`)."""
    best = files.read_json(os.path.join(model_dir, BEST_FILE), log)
    if best is not None and not {"global_step", "metric", "value", "checkpoint"} <= set(best):
        files.move_aside(os.path.join(model_dir, BEST_FILE), "fields missing", log)
        return None
    return best


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


def keep_checkpoint(model_dir: str, checkpoint_path: str, metric: str, value: float, global_step: int,
                    eval_dir: str = "eval") -> dict:  # fmt: skip
    """Copies `checkpoint_path`'s files to `model_dir/best/` and writes best.json (naming the
    eval directory, `eval` or `eval_<set>`, whose `metric` it is).

    The copy is made in a temporary folder and swapped in, so a crash leaves
    either the old best or the new one, never a mix.
    """
    best_dir = os.path.join(model_dir, BEST_DIR)
    staging = best_dir + ".tmp"
    shutil.rmtree(staging, ignore_errors=True)
    checkpoint_files = tf.io.gfile.glob(checkpoint_path + ".*")
    if not any(name.endswith(".index") for name in checkpoint_files):
        raise FileNotFoundError(f"checkpoint {checkpoint_path} is gone; cannot keep it as the best")
    basename = os.path.basename(checkpoint_path)
    try:
        os.makedirs(staging)
        for name in checkpoint_files:
            shutil.copy2(name, staging)
        with open(os.path.join(staging, "checkpoint"), "w") as f:
            f.write(f'model_checkpoint_path: "{basename}"\nall_model_checkpoint_paths: "{basename}"\n')
        shutil.rmtree(best_dir, ignore_errors=True)
        os.replace(staging, best_dir)
    except OSError as error:  # A full disk, a read-only folder: the old best stays whole.
        shutil.rmtree(staging, ignore_errors=True)
        raise RunError(f"cannot keep {checkpoint_path} as the best in {best_dir}: {error.strerror or error}") from None
    best = {
        "global_step": int(global_step),
        "metric": metric,
        "value": float(value),
        "checkpoint": os.path.join(BEST_DIR, basename),
        "source": checkpoint_path,
        "eval_dir": eval_dir,
    }
    files.write_atomic(os.path.join(model_dir, BEST_FILE), json.dumps(best, indent=2))
    return best


class BestCheckpointKeeper(tf.estimator.Exporter):
    """An Exporter that keeps the best checkpoint's files aside (see module doc)."""

    def __init__(self, model_dir: str, metric: str, higher_is_better: bool = True, stream=None, rule=None,
                 eval_dir: str = None):  # fmt: skip
        self._model_dir = model_dir
        self._eval_dir = eval_dir or os.path.join(model_dir, "eval")  # The evaluations it follows,
        self._eval_name = os.path.basename(self._eval_dir)  # as best.json names them.
        self._metric = metric
        self._higher_is_better = higher_is_better
        self._stream = stream or sys.stdout
        self._rule = rule  # None: any improvement; or BetterByMargin, SignificantlyBetter.
        self._best = self._best_step = None
        self._loaded = False

    @property
    def name(self):
        return "best_checkpoint"

    def _load(self, current_step):
        best = read_best(self._model_dir, lambda line: print(line, file=self._stream, flush=True))
        same_set = best is not None and best.get("eval_dir", "eval") == self._eval_name
        if best is not None and best.get("metric") == self._metric and same_set:
            self._best, self._best_step = best["value"], best["global_step"]
        else:
            # The ResultsReporter has already recorded the current evaluation: leave it out.
            record = best_from_results(self._eval_dir, self._metric, self._higher_is_better, before_step=current_step)
            if record is not None and best is not None:  # best/ holds another choice's best: replace it.
                record = self._rechoose(best, record)
            if record is not None:
                self._best, self._best_step = record["metrics"][self._metric], record["global_step"]
        self._loaded = True

    def _rechoose(self, old, record):
        """After BEST_METRIC or BEST_SET changed: keeps `record`'s checkpoint in best/ if it
        still exists (returns `record`), else leaves the best unset (None: the next
        evaluation becomes it); one line either way."""
        chosen = f"{self._metric} on {self._eval_name}"
        was = f"{old.get('metric')} on {old.get('eval_dir', 'eval')}"
        checkpoint = record.get("checkpoint") or ""
        say = functools.partial(print, file=self._stream, flush=True)
        if tf.io.gfile.exists(checkpoint + ".index"):
            keep_checkpoint(self._model_dir, checkpoint, self._metric, record["metrics"][self._metric],
                            record["global_step"], self._eval_name)  # fmt: skip
            say(f"best: was by {was}, now by {chosen}: step {record['global_step']} from its results")
            return record
        say(f"best: was by {was}, now by {chosen}; its best step's checkpoint is gone: the next evaluation starts it")
        return None

    def export(self, estimator, export_path, checkpoint_path, eval_result, is_the_final_export):
        del estimator, export_path, is_the_final_export
        if not self._loaded:
            self._load(int(eval_result["global_step"]))
        if self._metric not in eval_result:
            known = ", ".join(sorted(k for k in eval_result if "/" not in k and k != "global_step"))
            raise ConfigError(f"BEST_METRIC {self._metric!r} is not a metric of this task; it has: {known}")
        value, step = float(eval_result[self._metric]), int(eval_result["global_step"])
        if not improves(self._rule, value, self._best, self._higher_is_better, self._metric, self._eval_dir, step,
                        self._best_step):  # fmt: skip
            return None
        keep_checkpoint(self._model_dir, checkpoint_path, self._metric, value, step, self._eval_name)
        self._best, self._best_step = value, step
        print(f"best {self._metric} so far: {value:.4f} at step {eval_result['global_step']}", file=self._stream)
        return os.path.join(self._model_dir, BEST_DIR)


class BestModelExporter(tf.estimator.Exporter):
    """`export/best/`: the SavedModel of the checkpoint in `best/`, whatever restarts came between.

    Stock `tf.estimator.BestExporter` exports unconditionally at the first evaluation of
    every process (`not self._has_exported`; tensorflow/tensorflow#47396) and keeps one
    export, so after a restart `export/best/` could hold a worse model than `best/`. This
    exporter runs after the `BestCheckpointKeeper` and exports whenever the SavedModel in
    `export/best/` is not of the best checkpoint's step (read from the SavedModel's own
    variables): at a new best, and after a restart that left it stale or missing (then
    from the copy in `best/`, which `keep_checkpoint_max` cannot delete).

    Args:
      model_dir: the training's model directory (its `best.json` names the best).
      serving_input_receiver_fn: the signature's input (`models/serving.py`).
    """

    def __init__(self, model_dir: str, serving_input_receiver_fn, stream=None):
        self._model_dir, self._receiver = model_dir, serving_input_receiver_fn
        self._stream = stream or sys.stdout

    @property
    def name(self):
        return "best"

    def export(self, estimator, export_path, checkpoint_path, eval_result, is_the_final_export):
        del is_the_final_export
        best = read_best(self._model_dir, lambda line: print(line, file=self._stream, flush=True))
        if best is None:
            return None
        for name in tf.io.gfile.glob(os.path.join(export_path, "temp-*")):  # An export a crash cut short.
            tf.io.gfile.rmtree(name)
        versions = exported_versions(export_path)
        if versions and exported_step(versions[-1]) == best["global_step"]:
            return None
        current = int(eval_result["global_step"]) == best["global_step"]
        source = checkpoint_path if current else os.path.join(self._model_dir, best["checkpoint"])
        path = estimator.export_saved_model(export_path, self._receiver, checkpoint_path=source)
        path = path.decode() if isinstance(path, bytes) else path
        for old in exported_versions(export_path):
            if os.path.abspath(old) != os.path.abspath(path):
                tf.io.gfile.rmtree(old)
        return path


def exported_versions(export_path: str) -> list:
    """The SavedModel folders (Estimator's timestamped names) under `export_path`, oldest first."""
    if not tf.io.gfile.isdir(export_path):
        return []
    names = [name.rstrip("/") for name in tf.io.gfile.listdir(export_path)]
    return [os.path.join(export_path, name) for name in sorted(n for n in names if n.isdigit())]


def exported_step(saved_model_dir: str):
    """The global step of the checkpoint a SavedModel was exported from (None if unreadable)."""
    try:
        return int(tf.train.load_variable(os.path.join(saved_model_dir, "variables", "variables"), "global_step"))
    except (tf.errors.OpError, ValueError):
        return None
