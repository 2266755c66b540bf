"""The training root, read as a recipe: build, prepare the model directory, specs, run, report.

Reading order (each file's docstring points to the next): `train.py` -> this file ->
`models/model_fn.py` (the model_fn Estimator calls in each mode) -> `models/task.py` (what
a task supplies: loss, metrics, predictions) -> `data/input.py` (the input_fn) ->
`core/evaluation.py` (every evaluation path, and what happens to its results).

`train_and_evaluate` is gin's root of `train.py` (registered in `core/configurables.py`,
bound in `configs/base.gin`). What it delegates, each named for what it guarantees:
`core/model_dir.py` (one trainer, nothing left by a failed first run, a torn checkpoint
repaired, the resume state), `core/cluster.py` (the TF_CONFIG roles other than the
chief), `core/evaluation.py` (the reporters every evaluation runs: results, the best
checkpoint, exports), `core/warm_start.py` and `core/best.py` (their gin groups).
"""

import functools
import os
import sys
import time

import gin.tf
import tensorflow as tf

from common.errors import ConfigError
from core import checkpoints, cluster, evaluation, results
from core import eval_sets as eval_sets_lib
from core.best import BestCheckpoint
from core.estimator import Estimator
from core.model_dir import prepare
from core.warm_start import WarmStart
from hooks import preemption
from hooks.preemption import SignalCatcher
from hooks.progress import ProgressHook
from hooks.train_steps import LocalSteps


def train_and_evaluate(
    model_dir: str,
    model_fn,
    train_input_fn,
    eval_input_fn,
    train_steps: int,
    eval_every_steps: int,
    seed: int = 0,
    keep_checkpoint_max: int = 5,
    best: BestCheckpoint = None,
    warm_start: WarmStart = None,
    export: evaluation.Export = None,
    reporters=(),
    strategy=None,
    keep_eval_graph: bool = True,
    evaluator_timeout_secs: float = 600,
    progress_every_secs: float = 10.0,
    stream=None,
    slicing=None,
    eval_sets=None,
    eval_input_fn_builder=None,
):
    """Trains for `train_steps`, saving a checkpoint and evaluating it every `eval_every_steps`.

    Each evaluation covers the whole eval set, appends a line to `model_dir/eval/results.jsonl`
    and prints a table; the final checkpoint is always evaluated. With several evaluation
    sets (`eval_sets`) each is evaluated at every checkpoint into its own `eval_<set>/`. A
    finished run, run again, does no work. Under TF_CONFIG the role decides (docs/distributed.md): the chief (or a
    lone process) runs this recipe; the evaluator, ps and workers run theirs.

    Args:
      model_dir: where checkpoints, events and results go.
      model_fn: a plain model_fn from `build_model_fn` (it carries its task).
      train_input_fn, eval_input_fn: from `make_input_fn`, for the same task.
      train_steps: the step budget (`max_steps`).
      eval_every_steps: checkpoint and evaluate every this many steps.
      seed: graph-level seed (RunConfig.tf_random_seed).
      keep_checkpoint_max: checkpoints kept (the best one is kept aside anyway).
      best: what "best" means (`core.best.BestCheckpoint`: the metric, its direction, the
        rule, early stopping); None: the task's headline, any improvement, no early stop.
      warm_start: `core.warm_start.WarmStart`, fine-tuning from another model; None: none.
      export: `core.evaluation.Export`, the SavedModel exports; None: none.
      reporters: extra reporter builders run after every evaluation (gin's `REPORTERS`).
      strategy: None (one process; with TF_CONFIG ps tasks, Estimator's asynchronous
        replication), or a synchronous strategy from `core/cluster.py`.
      keep_eval_graph: evaluations share one EVAL graph and session (`core/estimator.py`);
        False: stock Estimator's evaluation (gin's KEEP_EVAL_GRAPH).
      evaluator_timeout_secs: a separate evaluator or worker gives up after this long
        without a checkpoint.
      progress_every_secs: seconds between progress lines.
      stream: where progress and results are printed (default stdout).
      slicing: `metrics.slices.Slicing`, the slices every evaluation reports (gin's
        `slicing.slice_by`); None: none.
      eval_sets: several evaluation sets (gin's `EVAL_SETS`, `core/eval_sets.py`),
        each built by `eval_input_fn_builder` (gin's `@eval/make_input_fn`) with its files;
        None or `{}`: `eval_input_fn` alone, into `eval/`. `best.eval_set` (BEST_SET) names
        the one the best checkpoint, the exports and early stopping follow (the first).

    Returns:
      The last evaluation's results record (`core/results.py`) of the followed set, or None.
    """
    stream = stream or sys.stdout
    log = functools.partial(print, file=stream, flush=True)
    task = _the_task(model_dir, model_fn, train_input_fn, eval_input_fn)
    best = (best or BestCheckpoint()).for_task(task)
    sets = eval_sets_lib.build_eval_sets(eval_sets, eval_input_fn_builder, eval_input_fn, slicing)
    followed = eval_sets_lib.followed_set(sets, best.eval_set)
    # [(set, its reporters)], the followed set first; a bad slice fails here, before training.
    by_set = evaluation.reporters_by_set(model_dir, sets, followed, task, stream, best, export, reporters)
    eval_dirs = [eval_set.eval_dir(model_dir) for eval_set, _ in by_set]
    progress = ProgressHook(train_steps, progress_every_secs, stream)

    def build(settings=None):
        return build_estimator(model_fn, model_dir, seed, eval_every_steps, keep_checkpoint_max, settings, strategy,
                               keep_eval_graph, len(sets))  # fmt: skip

    role, index = cluster.role()
    if role == "evaluator":
        estimator = Estimator(model_fn=model_fn, model_dir=model_dir, keep_eval_graph=keep_eval_graph,
                              max_eval_graphs=len(sets))  # fmt: skip
        return evaluation.follow_trainer(estimator, by_set, train_steps, evaluator_timeout_secs, stream)
    cluster.check_strategy(strategy)
    if role == "ps":
        return cluster.run_ps(model_dir, train_steps, stream)
    if role == "worker":
        return cluster.run_worker(build(), train_input_fn, followed.input_fn, train_steps, strategy, index,
                                  evaluator_timeout_secs, [progress], stream)  # fmt: skip

    def diagnose():  # Names the bad file and record, read again after a data failure.
        return train_input_fn.diagnose() or next(filter(None, (s.input_fn.diagnose() for s in sets)), None)

    early_stopping = bool(best.early_stopping_evals)
    with (
        prepare(model_dir, train_steps, early_stopping, diagnose, log, [s.dir_name for s in sets]) as resume,
        SignalCatcher() as signals,
    ):
        estimator = build(_warm_start_settings(warm_start, resume, model_dir, model_fn, train_input_fn, seed, log))
        _check_resumable(resume, model_dir, model_fn, train_input_fn, seed, best)
        _evaluate_if_never_evaluated(resume, estimator, by_set, signals)
        if resume.finished:
            return _report_finished(resume.finished, eval_dirs, log)
        local_steps = LocalSteps()
        train_hooks = [progress, local_steps, gin.tf.GinConfigSaverHook(model_dir, summarize_config=True)]
        train_hooks += [hook for hook in [best.early_stopping_hook(estimator, eval_every_steps, eval_dirs[0])] if hook]
        train_hooks.append(_checkpoint_saver(model_dir, eval_every_steps, strategy, signals))
        train_spec = tf.estimator.TrainSpec(train_input_fn, max_steps=train_steps, hooks=train_hooks,
                                            saving_listeners=[progress.listener])  # fmt: skip
        eval_spec = _eval_spec(by_set, eval_dirs[0], signals)
        start = time.time()
        log(f"training {model_dir} to step {train_steps}, evaluating every {eval_every_steps} steps")
        tf.estimator.train_and_evaluate(estimator, train_spec, eval_spec)
        return _finish(model_dir, eval_dirs, train_steps, best.metric, local_steps, start, log)


def build_estimator(model_fn, model_dir: str, seed: int, save_checkpoints_steps: int, keep_checkpoint_max: int,
                    warm_start_from=None, strategy=None, keep_eval_graph: bool = True, eval_sets: int = 1):  # fmt: skip
    """A `core.estimator.Estimator` (its evaluations keep one EVAL graph per evaluation set
    unless `keep_eval_graph` is False) with a seeded RunConfig, `WarmStartSettings` if any,
    and a synchronous strategy from `core/cluster.py` if any."""
    run_config = tf.estimator.RunConfig(
        model_dir=model_dir,
        tf_random_seed=seed,
        save_checkpoints_steps=save_checkpoints_steps,
        save_checkpoints_secs=None,
        keep_checkpoint_max=keep_checkpoint_max,
        save_summary_steps=min(100, save_checkpoints_steps),
        log_step_count_steps=None,
        # Estimator sleeps 5 s x (worker index + 1) before a worker starts; the worker
        # waits for the chief's first checkpoint instead (`cluster.run_worker`).
        experimental_max_worker_delay_secs=0,
        train_distribute=strategy.build() if strategy else None,
        session_config=strategy.session_config() if strategy else None,
    )
    return Estimator(model_fn=model_fn, config=run_config, warm_start_from=warm_start_from,
                     keep_eval_graph=keep_eval_graph, max_eval_graphs=eval_sets)  # fmt: skip


def _check_resumable(resume, model_dir, model_fn, input_fn, seed, best):
    """A ModelDirError naming the gin binding that changed when the checkpoint a run resumes
    from cannot be restored into this model (`core.checkpoints.check_model_matches`)."""
    if not resume.checkpoint:
        return
    variables = checkpoints.model_variables(model_fn, input_fn, seed)
    if best.early_stopping_evals:  # Estimator's early-stopping hook keeps a flag in the checkpoint.
        variables[checkpoints.EARLY_STOPPING_VARIABLE] = []
    checkpoints.check_model_matches(model_dir, resume.checkpoint, variables, gin.operative_config_str())


def _eval_spec(by_set, eval_dir, signals):
    """The EvalSpec: the whole followed set after every checkpoint, its reporters as the
    exporters, then (`evaluation.OtherSets`) each other evaluation set."""
    (followed, reporters), others = by_set[0], by_set[1:]
    if others:
        reporters = reporters + [evaluation.OtherSets(others, [preemption.evaluation_stopper(signals)])]
    return tf.estimator.EvalSpec(
        followed.input_fn,
        steps=None,  # The whole eval set, partial last batch included.
        name=followed.name,  # Its eval directory: eval/, or eval_<set>/.
        exporters=reporters,
        hooks=[
            gin.tf.GinConfigSaverHook(eval_dir, summarize_config=True, include_step_in_filename=False),
            preemption.evaluation_stopper(signals),
        ],
        start_delay_secs=0,
        throttle_secs=0,  # Cadence is set in steps, by save_checkpoints_steps.
    )


def _the_task(model_dir, model_fn, train_input_fn, eval_input_fn):
    """The task the model_fn and both input_fns share; a ConfigError if they differ, or
    if there is no model directory."""
    if not model_dir:
        raise ConfigError("no model directory: pass --model_dir or set MODEL_DIR in the gin file")
    task = model_fn.task
    for name, input_fn in (("train", train_input_fn), ("eval", eval_input_fn)):
        if type(input_fn.task) is not type(task):
            raise ConfigError(
                f"{name}/make_input_fn reads {input_fn.task.name} labels but build_model_fn has a {task.name} task: "
                "bind both to %TASK"
            )
    return task


def _report_finished(line: str, eval_dirs: list, log):
    """A run with nothing left to train: says so, prints each set's last results; returns the
    followed set's (the first) last record."""
    log(line)
    last = [results.read_records(eval_dir)[-1:] for eval_dir in eval_dirs]
    for eval_dir, records in zip(eval_dirs, last):
        if records:
            log((f"{os.path.basename(eval_dir)}:\n" if len(eval_dirs) > 1 else "") + results.format_table(records[0]))
    return last[0][0] if last[0] else None


def _warm_start_settings(config, resume, model_dir, model_fn, input_fn, seed, log):
    """`WarmStartSettings` for a run that starts from scratch with a warm start; else None."""
    if config is None or not config.source:
        return None
    if resume.checkpoint:
        log(f"warm start: ignored, {model_dir} resumes from its own {resume.checkpoint}")
        return None
    plan = config.plan(model_dir, model_fn, input_fn, seed)
    log(plan.line)
    return plan.settings


def _evaluate_if_never_evaluated(resume, estimator, by_set, signals):
    """Evaluates the checkpoint a run resumes from on each set that never had it (the run
    stopped between its save and its evaluations), so it is a candidate for the best and
    the exports, as in an uninterrupted run. A fresh run's step-0 checkpoint is never evaluated."""
    if not resume.step:
        return
    for eval_set, reporters in by_set:
        if resume.step not in results.evaluated_steps(eval_set.eval_dir(estimator.model_dir)):
            evaluation.evaluate_set(estimator, eval_set, reporters, resume.checkpoint,
                                    hooks=[preemption.evaluation_stopper(signals)])  # fmt: skip


def _checkpoint_saver(model_dir, save_steps, strategy, signals):
    """The training's checkpoint hook: saves every `save_steps` (Estimator hangs the
    evaluations on it) and, on SIGTERM or Ctrl-C, saves the step in flight and stops.
    Under a distribution strategy, where saving is collective, Estimator's own saver
    stays and a signal stops the run at its last checkpoint."""
    if strategy is not None:
        return preemption.StopOnSignal(signals, "during training; the run resumes from its last checkpoint")
    return preemption.CheckpointSaver(model_dir, save_steps, signals)


def _finish(model_dir, eval_dirs, train_steps, metric, local_steps, start, log):
    """Marks where training stopped (what the evaluator and the ps wait for) and says so.

    With asynchronous workers the final step may be past `train_steps`, with early
    stopping before it. In a cluster the evaluator evaluates the final checkpoint (maybe
    not yet): None; alone, the followed set's last results record (one line per set).
    """
    final = tf.train.latest_checkpoint(model_dir)
    final_step = checkpoints.checkpoint_step(final)
    cluster.mark_done(model_dir, "chief", final_step=final_step, checkpoint=final, local_steps=local_steps.count,
                      train_steps=train_steps, early_stopped=final_step < train_steps)  # fmt: skip
    if cluster.cluster():
        log(f"done in {time.time() - start:.0f}s: final step {final_step}")
        return None
    last = [(results.read_records(eval_dir)[-1:] or [None])[0] for eval_dir in eval_dirs]
    for eval_dir, record in zip(eval_dirs, last):
        if record:
            value = record["metrics"].get(metric, float("nan"))
            step = record["global_step"]
            log(f"done in {time.time() - start:.0f}s: step {step}, {metric} {value:.4f}; results in {eval_dir}")
    return last[0]
