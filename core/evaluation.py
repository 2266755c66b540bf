"""Every evaluation path, on two shared pieces.

- `evaluate_checkpoint`: evaluate one checkpoint with `Estimator.evaluate` and hand
  the result to the reporters (`tf.estimator.Exporter`s: results.jsonl and the
  per-example CSV, the best checkpoint, SavedModel exports, and any reporter a
  gin list adds). `train_and_evaluate` gives Estimator the same reporters as its
  EvalSpec exporters, so every path reports the same way.
- `follow_checkpoints`: yield each new checkpoint of a training run through a
  private snapshot, until the final step or a timeout; shared by
  `evaluate.py --continuous` and the separate TF_CONFIG evaluator.

Stock Estimator's evaluator crashes with "The passed save_path is not a valid
checkpoint" when the trainer's `keep_checkpoint_max` deletes the checkpoint it is
about to read, can leave a `temp-*` export behind when that happens mid-export, and
waits forever when the trainer dies. The follower copies each new checkpoint before
touching it (a checkpoint deleted before it could be copied is skipped and logged),
yields each step at most once and the final step exactly once, and gives up with
an error after `timeout_secs` without a new checkpoint.

Reading order: `train.py` -> `core/experiment.py` -> `models/model_fn.py` ->
`models/task.py` -> `data/input.py` -> this file, the last of the six; then
docs/evaluation.md walks through what an evaluation writes and why.

The evaluation hooks (SessionRunHooks) come from the model_fn's
`evaluation_hooks` (a gin list on `build_model_fn`), so every path runs them too.
"""

import contextlib
import hashlib
import os
import shutil
import sys
import time

import gin.tf
import numpy as np
import tensorflow as tf

from common.errors import EvaluationError, TrainerGoneError, reported
from core import checkpoints, cluster, results
from core.best import BestCheckpoint, BestCheckpointKeeper, BestModelExporter
from core.estimator import Estimator
from core.eval_sets import chosen_set, eval_dir_name, set_slicing
from core.model_dir import EvalDirLock, leaves_no_trace
from data.input import parse_subset
from models.serving import serving_input_receiver_fn


def subset_eval_name(indices) -> str:
    """A stable eval name for a subset, so different subsets never share results."""
    digest = hashlib.sha1(",".join(str(int(i)) for i in sorted(indices)).encode()).hexdigest()[:8]
    return f"subset_{len(indices)}_{digest}"


def list_checkpoints(model_dir: str) -> list:
    """The model directory's checkpoints that still exist, in step order."""
    return [path for path in checkpoints.listed_checkpoints(model_dir) if tf.io.gfile.exists(path + ".index")]


def examples_of(input_fn):
    """Each example's `(file name, height, width)` by index, from an evaluation input_fn's
    `examples` (the shards' indexes); None if unknown."""
    return getattr(input_fn, "examples", None) or None


class Export:
    """A training run's SavedModel exports (gin: `export.*`): `core.best.BestModelExporter`
    writes `export/best/` (the model of the checkpoint in `best/`) and a `LatestExporter`
    `export/latest/`.

    Args:
      image_size: `(height, width)` of the serving signature, `(None, None)` for any
        size; None: no SavedModel exports.
    """

    def __init__(self, image_size=(None, None)):
        self.image_size = image_size


class Reporting:
    """What the reporters of one eval directory share, and what a gin reporter builder
    (`REPORTERS`) is given as its `context`.

    Attributes:
      model_dir, eval_dir: the model directory and its eval directory (`eval[_<name>]`).
      task: the task (`models/task.py`).
      input_fn: the evaluation's input_fn: its example count is checked against each
        result, its examples' file names go to the per-example CSV.
      stream: where tables and lines go.
      training_run: whether this is a training run's own evaluation (train_and_evaluate
        and the separate evaluator) of the set it follows (BEST_SET, by default the first
        or only one), which keeps the best checkpoint and exports.
      best: the resolved `core.best.BestCheckpoint` (a training run's).
      export: `Export` (a training run's), or None.
      slicing: `metrics.slices.Slicing`, the slices each evaluation reports, or None.
    """

    def __init__(
        self,
        model_dir,
        eval_dir,
        task,
        input_fn,
        stream=None,
        training_run=False,
        best=None,
        export=None,
        slicing=None,
    ):
        self.model_dir, self.eval_dir, self.task = model_dir, eval_dir, task
        self.stream = stream or sys.stdout
        self.expected_examples, self.examples = input_fn.num_examples, examples_of(input_fn)
        self.slicing = slicing
        if slicing:
            slicing.check(self.examples, task)  # A bad slice fails here, not after the first evaluation.
        self.training_run, self.export = training_run, export
        self.best = (best or BestCheckpoint()).for_task(task)

    @property
    def best_metric(self) -> str:
        return self.best.metric

    @property
    def higher_is_better(self) -> bool:
        return self.best.higher_is_better


def build_reporters(context: Reporting, extra=()) -> list:
    """The reporters every evaluation of a path runs, in order.

    Always the results reporter (results.jsonl, per-example CSV naming each example
    by index and, with the context's `filenames`, file; the table). For a training run's
    own evaluations (`context.training_run`) also the best-checkpoint keeper and, with
    `context.export`, the best and latest SavedModel exporters. Then `extra`: builders
    `(context) -> Exporter or None` from gin (`REPORTERS`).
    """
    best = context.best
    reporters = [
        results.ResultsReporter(
            context.eval_dir,
            context.task,
            context.stream,
            context.expected_examples,
            context.examples,
            context.slicing,
        )
    ]
    if context.training_run:
        reporters.append(BestCheckpointKeeper(context.model_dir, best.metric, best.higher_is_better, context.stream,
                                              best.rule, context.eval_dir))  # fmt: skip
        if context.export is not None and context.export.image_size:
            receiver = serving_input_receiver_fn(*context.export.image_size)
            reporters.append(BestModelExporter(context.model_dir, receiver, context.stream))
            reporters.append(tf.estimator.LatestExporter("latest", receiver, exports_to_keep=2))
    for make in extra or ():
        reporter = make(context)
        if reporter is not None:
            reporters.append(reporter)
    return reporters


def reporters_by_set(model_dir, eval_sets, followed, task, stream=None, best=None, export=None, extra=()) -> list:
    """`[(EvalSet, reporters)]` of a training run, the `followed` set first: its reporters
    keep the best checkpoint and export; every set's write its own results into its own
    eval directory. A bad slice of any set fails here (`Reporting`)."""
    ordered = [followed] + [eval_set for eval_set in eval_sets if eval_set is not followed]
    by_set = []
    for eval_set in ordered:
        mine = eval_set is followed
        eval_dir = eval_set.eval_dir(model_dir)
        context = Reporting(model_dir, eval_dir, task, eval_set.input_fn, stream, training_run=mine, best=best,
                            export=export if mine else None, slicing=eval_set.slicing)  # fmt: skip
        by_set.append((eval_set, build_reporters(context, extra)))
    return by_set


class OtherSets(tf.estimator.Exporter):
    """The last of the EvalSpec's exporters in a run with several evaluation sets: the
    checkpoint Estimator has just evaluated on the followed set is evaluated on each other
    set, in `EVAL_SETS`' order, each with its own reporters (`reporters_by_set`).

    Args:
      others: `[(EvalSet, reporters)]`, the sets after the followed one.
      hooks: more evaluation hooks (the run's `evaluation_stopper`).
    """

    def __init__(self, others, hooks=()):
        self._others, self._hooks = list(others), list(hooks)

    @property
    def name(self):
        return "other_eval_sets"

    def export(self, estimator, export_path, checkpoint_path, eval_result, is_the_final_export):
        del export_path, eval_result
        for eval_set, reporters in self._others:
            evaluate_set(estimator, eval_set, reporters, checkpoint_path, is_final=is_the_final_export,
                         hooks=self._hooks)  # fmt: skip


def evaluate_set(estimator, eval_set, reporters, path, checkpoint_name=None, is_final=False, hooks=()):
    """`evaluate_checkpoint` of one `EvalSet`, into its eval directory."""
    eval_dir = eval_set.eval_dir(estimator.model_dir)
    return evaluate_checkpoint(estimator, eval_set.input_fn, path, eval_dir, reporters, eval_set.name,
                               checkpoint_name, is_final, hooks)  # fmt: skip


def evaluate_checkpoint(
    estimator, input_fn, path, eval_dir, reporters, eval_name=None, checkpoint_name=None, is_final=False, hooks=()
):
    """Evaluates checkpoint `path` over the whole input and runs every reporter.

    Args:
      estimator: the Estimator (its model_fn carries the evaluation hooks).
      input_fn: from `make_input_fn`; evaluation is strict, a bad record stops it
        naming the file and record.
      path: the checkpoint to read (a snapshot, for the followers).
      eval_dir: the Estimator eval directory (`eval` or `eval_<name>`).
      reporters: from `build_reporters`.
      eval_name: Estimator's evaluation name (None: `eval`).
      checkpoint_name: the checkpoint the records name (the original of a snapshot).
      is_final: passed to the reporters (Exporter's `is_the_final_export`).
      hooks: more evaluation hooks (e.g. `hooks.preemption.evaluation_stopper`).

    Returns:
      Estimator's result dict.
    """
    with reported(getattr(input_fn, "diagnose", None), EvaluationError):
        result = estimator.evaluate(
            input_fn,
            steps=None,
            checkpoint_path=path,
            name=eval_name,
            hooks=[gin.tf.GinConfigSaverHook(eval_dir, summarize_config=True, include_step_in_filename=False), *hooks],
        )
        for reporter in reporters:
            export_path = os.path.join(estimator.model_dir, "export", reporter.name)
            # Exports read the snapshot; the results name the trainer's checkpoint.
            source = (checkpoint_name or path) if isinstance(reporter, results.ResultsReporter) else path
            reporter.export(estimator, export_path, source, result, is_final)
    return result


def snapshot(checkpoint: str, snapshot_dir: str):
    """Copies a checkpoint's files to `snapshot_dir`; returns the copy, or None if it vanished."""
    shutil.rmtree(snapshot_dir, ignore_errors=True)
    os.makedirs(snapshot_dir)
    try:
        names = tf.io.gfile.glob(checkpoint + ".index") + tf.io.gfile.glob(checkpoint + ".data-*")
        if not any(name.endswith(".index") for name in names) or len(names) < 2:
            return None
        for name in names:
            shutil.copy(name, snapshot_dir)  # An unlinked file stays readable while open.
    except OSError:
        return None
    copy = os.path.join(snapshot_dir, os.path.basename(checkpoint))
    return copy if checkpoints.checkpoint_problem(copy) is None else None


def follow_checkpoints(
    model_dir, snapshot_dir, final_step, timeout_secs, who="evaluator", stream=None, poll=0.2, final_marker=None
):
    """Yields `(checkpoint, snapshot, is_final)` for each new checkpoint of `model_dir`.

    Each step at most once, the final one exactly once (then it stops); a
    checkpoint deleted before it could be copied is skipped and logged. Looks at the
    latest checkpoint only: when evaluation is slower than training it skips
    intermediate ones (`--all_checkpoints` backfills them).

    `final_marker`, if given, returns the step of the trainer's last checkpoint once
    training is over (None before): the trainer records where it stopped
    (`core.cluster.mark_done`). Then that step is the final one, whether training
    stopped early (before `final_step`: early stopping) or past it (asynchronous
    workers overshoot: checkpoints 200 then 202); a follower that has already
    evaluated it ends there. A checkpoint at or past `final_step` is only final once
    the marker names it; until then it waits.

    Raises:
      TrainerGoneError: after `timeout_secs` without a new checkpoint.
    """
    stream = stream or sys.stdout
    last_step, last_new = -1, time.time()
    print(f"{who}: following {model_dir} until step {final_step}", file=stream, flush=True)
    try:
        while True:
            marked = final_marker() if final_marker is not None else None
            # Read after the marker: the trainer saves its last checkpoint before writing it.
            latest = tf.train.latest_checkpoint(model_dir)
            step = checkpoints.step_of(latest)
            waiting = marked is None and final_marker is not None and final_step is not None
            if waiting and step > last_step and step >= final_step:  # Past the budget; it may save again.
                if time.time() - last_new > timeout_secs:
                    raise TrainerGoneError(
                        f"{who}: checkpoint at step {step} but no end-of-training marker in {model_dir} "
                        f"for {timeout_secs:g} s: the trainer died or stalled"
                    )
                time.sleep(poll)
                continue
            final = marked if marked is not None else final_step
            if step > last_step:
                last_step, last_new = step, time.time()  # Each step once, evaluated or skipped.
                copy = snapshot(latest, snapshot_dir)
                if copy is None:
                    print(f"{who}: {latest} was deleted before it could be read; skipped", file=stream, flush=True)
                    continue
                is_final = final is not None and step >= final
                yield latest, copy, is_final
                if is_final:
                    print(f"{who}: evaluated the final step {step}; done.", file=stream, flush=True)
                    return
            elif marked is not None and last_step >= marked:  # Its last step came before its marker.
                print(f"{who}: training stopped at step {marked}, evaluated already; done.", file=stream, flush=True)
                return
            elif time.time() - last_new > timeout_secs:
                raise TrainerGoneError(
                    f"{who}: no new checkpoint in {model_dir} for {timeout_secs:g} s "
                    f"(last step {last_step}, final step {final_step}): the trainer died or stalled"
                )
            time.sleep(poll)
    finally:
        shutil.rmtree(snapshot_dir, ignore_errors=True)


def follow_trainer(estimator, by_set, train_steps, timeout_secs, stream=None):
    """The separate TF_CONFIG evaluator: evaluates the trainer's checkpoints as they come, on
    each evaluation set (`reporters_by_set`, the followed set first), until the one where
    the trainer of this job (this `train_steps`) says it stopped. Another set that already has
    a checkpoint's results (an evaluator restarted between two sets) is not evaluated again.

    Returns:
      The followed set's final evaluation's result dict (its results record, when every set
      was evaluated by an earlier run of this evaluator: then nothing is done).
    """
    stream = stream or sys.stdout
    eval_dirs = [eval_set.eval_dir(estimator.model_dir) for eval_set, _ in by_set]
    final_marker = cluster.final_marker(estimator.model_dir, train_steps)
    done = [results.evaluated_steps(eval_dir) for eval_dir in eval_dirs]
    final = final_marker()
    if final is not None and all(final in steps for steps in done):  # A finished job, run again.
        print(f"evaluator: the final step {final} is evaluated already; nothing to do", file=stream)
        return next(r for r in results.read_records(eval_dirs[0]) if r["global_step"] == final)
    result = None
    with contextlib.ExitStack() as locks:
        for eval_dir in eval_dirs:
            locks.enter_context(EvalDirLock(eval_dir))
        follower = follow_checkpoints(estimator.model_dir, os.path.join(eval_dirs[0], ".snapshot"), train_steps,
                                      timeout_secs, "evaluator", stream, final_marker=final_marker)  # fmt: skip
        for checkpoint, copy, is_final in follower:
            step = checkpoints.step_of(checkpoint)
            for number, (eval_set, reporters) in enumerate(by_set):
                if number and step in done[number]:  # The followed set's keepers see every step again.
                    continue
                evaluated = evaluate_set(estimator, eval_set, reporters, copy, checkpoint, is_final)
                result = evaluated if number == 0 else result
    return result


def evaluate(
    model_dir: str,
    model_fn_builder,
    input_fn_builder,
    final_step: int,
    checkpoint: str = None,
    all_checkpoints: bool = False,
    continuous: bool = False,
    timeout_secs: float = 600,
    subset=None,
    eval_name: str = None,
    worst_k: int = 0,
    summary_indices=(),
    reporters=(),
    stream=None,
    eval_scales=None,
    add_flipped_images=None,
    keep_eval_graph: bool = True,
    slicing=None,
    slice_by=None,
    eval_sets=None,
    eval_set: str = None,
):
    """The root of evaluate.py: evaluates checkpoints of `model_dir`; returns the records.

    Args:
      model_dir: the training's model directory.
      model_fn_builder: `build_model_fn`, called with `summary_indices=...`.
      input_fn_builder: `make_input_fn` for the evaluation split, called with
        `subset=...`.
      final_step: the training's last step (`TRAIN_STEPS`), for `continuous`.
      checkpoint: evaluate this checkpoint (default: the latest).
      all_checkpoints: evaluate every checkpoint in step order, skipping those
        already in this eval directory's results.jsonl (a backfill that resumes).
      continuous: evaluate each new checkpoint as it appears, until the trainer's
        last one is evaluated (`final_step`, or where the trainer says it stopped:
        early stopping, asynchronous overshoot) or `timeout_secs` pass with no new
        checkpoint.
      timeout_secs: see `continuous`.
      subset: example indices (list, "3,17,42" or "@file") to evaluate alone,
        under an eval name of their own.
      eval_name: the eval directory is `eval_<name>`; default `eval`, or
        `subset_<n>_<hash>` for a subset, `worst_<k>` for `worst_k`.
      worst_k: evaluate (and show in TensorBoard) the K worst examples of the
        latest per-example CSV of the default eval directory (worst as the task
        ranks them), at that evaluation's checkpoint.
      summary_indices: examples shown in TensorBoard in a full evaluation (a
        subset evaluation shows its own examples, up to 64).
      reporters: extra reporter builders (gin's `REPORTERS`), run after every evaluation.
      stream: where tables and messages go (default stdout).
      eval_scales, add_flipped_images: override the model's multi-scale and
        flipped evaluation (`build_model_fn`'s, gin's EVAL_SCALES and
        ADD_FLIPPED_IMAGES); None keeps the configured ones. An override goes to
        an eval directory of its own (`eval_scales_<...>[_flipped]`) unless
        `eval_name` is given, so its curve never mixes with the training's.
      keep_eval_graph: evaluations share one EVAL graph and session
        (`core/estimator.py`); False: stock Estimator (gin's KEEP_EVAL_GRAPH).
      slicing: `metrics.slices.Slicing`, the slices of each evaluation (gin's
        `slicing.*`); None: none.
      slice_by: slice specs that replace the set's and `slicing`'s (evaluate.py's
        --slice_by); None: those.
      eval_sets: gin's `EVAL_SETS` (`core.eval_sets.parse_eval_sets`); empty: the one split of
        `input_fn_builder`, into `eval/`.
      eval_set: which of `eval_sets` (default: the first): its files, subset and slices,
        into `eval_<set>/` (a subset, a worst-k or a scales evaluation of it into
        `eval_<set>_<name>/`).

    Raises:
      EvaluationError: no checkpoint, or conflicting modes.
      TrainerGoneError: continuous evaluation timed out before `final_step`.
    """
    stream = stream or sys.stdout
    if not model_dir:
        raise EvaluationError("no model directory: pass --model_dir or set MODEL_DIR in the gin file")
    if sum(bool(x) for x in (checkpoint, all_checkpoints, continuous, worst_k)) > 1:
        raise EvaluationError("choose one of --checkpoint, --all_checkpoints, --continuous, --worst_k")
    set_name, spec = chosen_set(eval_sets, eval_set, eval_name)
    slicing = set_slicing(slicing, spec["slice_by"]) if spec else slicing
    slicing = slicing if slice_by is None else set_slicing(slicing, slice_by)
    indices = parse_subset(subset if subset is not None or not spec else spec["subset"])

    def name_in_set(name):  # A view of a set (its subset, worst, scales) stays apart from the set's own curve.
        return f"{set_name}_{name}" if set_name else name

    if worst_k:
        checkpoint, indices = _worst_examples(model_dir, worst_k, eval_dir_name(set_name))
        eval_name = eval_name or name_in_set(f"worst_{worst_k}")
    if indices is not None and (subset is not None or worst_k):
        eval_name = eval_name or name_in_set(subset_eval_name(indices))
        summary_indices = indices.tolist()[:64]
        print(f"evaluating {len(indices)} example(s) under eval name {eval_name!r}", file=stream)
    views = {}
    if eval_scales is not None:
        views["eval_scales"] = [float(scale) for scale in eval_scales]
    if add_flipped_images is not None:
        views["add_flipped_images"] = bool(add_flipped_images)
    if views and not eval_name:
        scales = views.get("eval_scales")
        name = "scales_" + ("_".join(f"{scale:g}" for scale in scales) if scales else "configured")
        eval_name = name_in_set(name + ("_flipped" if views.get("add_flipped_images") else ""))
    eval_name = eval_name or set_name
    model_fn = model_fn_builder(summary_indices=list(summary_indices), **views)
    files = {"file_pattern": spec["files"]} if spec else {}
    input_fn = input_fn_builder(subset=None if indices is None else indices.tolist(), **files)
    estimator = Estimator(model_fn=model_fn, model_dir=model_dir, keep_eval_graph=keep_eval_graph)
    eval_dir = os.path.join(model_dir, eval_dir_name(eval_name))
    context = Reporting(model_dir, eval_dir, model_fn.task, input_fn, stream, slicing=slicing)
    reporters = build_reporters(context, reporters)

    def run(path, checkpoint_name=None, is_final=False):
        # A failed evaluation leaves no eval directory behind if it made it.
        with leaves_no_trace(eval_dir, keep_if=lambda: bool(results.read_records(eval_dir))):
            evaluate_checkpoint(estimator, input_fn, path, eval_dir, reporters, eval_name, checkpoint_name, is_final)
        return reporters[0].last_record  # build_reporters puts the results reporter first.

    with EvalDirLock(eval_dir):
        if continuous:
            follower = follow_checkpoints(
                model_dir,
                os.path.join(eval_dir, ".snapshot"),
                final_step,
                timeout_secs,
                "evaluate",
                stream,
                final_marker=cluster.final_marker(model_dir, final_step),
            )
            return [run(copy, path, is_final) for path, copy, is_final in follower]
        if all_checkpoints:
            done = results.evaluated_steps(eval_dir)
            paths = list_checkpoints(model_dir)
            if not paths:
                raise EvaluationError(f"no checkpoint in {model_dir}")
            todo = [p for p in paths if checkpoints.step_of(p) not in done]
            print(f"{len(paths)} checkpoint(s), {len(paths) - len(todo)} already evaluated in {eval_dir}", file=stream)
            return [run(path) for path in todo]
        existing = list_checkpoints(model_dir)  # The newest that still exists, not just the newest listed.
        path = checkpoint or (existing[-1] if existing else tf.train.latest_checkpoint(model_dir))
        if not path:
            raise EvaluationError(f"no checkpoint in {model_dir}")
        if not tf.io.gfile.exists(path + ".index"):
            raise EvaluationError(f"checkpoint {path} does not exist")
        return [run(path)]


def _worst_examples(model_dir: str, k: int, directory: str = "eval"):
    """`(checkpoint, indices)` of the k worst examples of the latest full evaluation in `directory`."""
    path = results.latest_per_example(os.path.join(model_dir, directory))
    if path is None:
        raise EvaluationError(f"no per-example CSV in {model_dir}/{directory}: run a full evaluation first")
    checkpoint, rows = results.read_per_example(path)
    # The CSV names the checkpoint as it was written; the model directory may have moved.
    checkpoint = os.path.join(model_dir, os.path.basename(checkpoint))
    if not tf.io.gfile.exists(checkpoint + ".index"):
        raise EvaluationError(f"{path} was made from {checkpoint}, which no longer exists")
    return checkpoint, np.array(sorted(index for index, _ in rows[:k]), np.int64)
