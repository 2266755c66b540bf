"""The training root: RunConfig, Estimator, TrainSpec, EvalSpec, `train_and_evaluate`.

Gin configures `train_and_evaluate` (registered in `core/configurables.py`);
`train.py` parses flags and gin, then calls it.
"""

import os
import sys
import time

import gin.tf
import tensorflow as tf

from common.errors import ConfigError, TrainerGoneError, reported
from core import cluster, evaluation, guard, results, warm_start
from core.estimator import Estimator
from hooks.progress import ProgressHook
from hooks.train_steps import LocalSteps


def build_estimator(
    model_fn,
    model_dir: str,
    seed: int,
    save_checkpoints_steps: int,
    keep_checkpoint_max: int,
    warm_start_from=None,
    strategy=None,
):
    """A `core.estimator.Estimator` (its evaluations keep one EVAL graph) with a seeded
    RunConfig (and `WarmStartSettings`, and a synchronous strategy from `core/cluster.py`,
    if any)."""
    run_config = tf.estimator.RunConfig(
        model_dir=model_dir,
        tf_random_seed=seed,
        save_checkpoints_steps=save_checkpoints_steps,
        save_checkpoints_secs=None,
        keep_checkpoint_max=keep_checkpoint_max,
        save_summary_steps=min(100, save_checkpoints_steps),
        log_step_count_steps=None,
        # Estimator sleeps 5 s x (worker index + 1) before a worker starts; the worker
        # waits for the chief's first checkpoint instead (see train_and_evaluate).
        experimental_max_worker_delay_secs=0,
        train_distribute=strategy.build() if strategy else None,
        session_config=strategy.session_config() if strategy else None,
    )
    return Estimator(model_fn=model_fn, config=run_config, warm_start_from=warm_start_from)


def checkpoint_step(checkpoint_path: str) -> int:
    """The global step stored in a checkpoint."""
    return int(tf.train.load_variable(checkpoint_path, tf.compat.v1.GraphKeys.GLOBAL_STEP))


def train_and_evaluate(
    model_dir: str,
    model_fn,
    train_input_fn,
    eval_input_fn,
    train_steps: int,
    eval_every_steps: int,
    seed: int = 0,
    keep_checkpoint_max: int = 5,
    best_metric: str = None,
    higher_is_better: bool = None,
    best_rule=None,
    early_stopping_evals: int = 0,
    export_image_size=None,
    evaluator_timeout_secs: float = 600,
    reporters=(),
    progress_every_secs: float = 10.0,
    stream=None,
    warm_start_from: str = None,
    warm_start_skip: str = warm_start.DEFAULT_SKIP,
    strategy=None,
):
    """Trains for `train_steps`, evaluating every `eval_every_steps` and at the end.

    Evaluation runs after every checkpoint (one every `eval_every_steps`, and
    Estimator always saves and evaluates the final one), over the whole eval set.
    Each evaluation appends a line to `model_dir/eval/results.jsonl` and prints a
    table. Re-running a finished job does no work.

    Args:
      model_dir: where checkpoints, events and results go.
      model_fn: a plain model_fn (from `build_model_fn`; it carries its task).
      train_input_fn, eval_input_fn: from `make_input_fn`, for the same task.
      train_steps: the step budget (`max_steps`).
      eval_every_steps: checkpoint and evaluate every this many steps.
      seed: graph-level seed (RunConfig.tf_random_seed).
      keep_checkpoint_max: checkpoints kept (the best one is kept aside anyway).
      best_metric: what "best" means, for the best checkpoint (copied to
        `model_dir/best/`, named in `best.json`), the best SavedModel export and
        early stopping; None for the task's headline metric.
      higher_is_better: the direction of `best_metric`; None to ask the task.
      best_rule: when a checkpoint replaces the best (`core/best.py`): None for any
        improvement, `BetterByMargin` or `SignificantlyBetter` (gin's `BEST_RULE`).
      early_stopping_evals: stop when `best_metric` has not improved for this many
        evaluations (0: never).
      export_image_size: `(height, width)` of the serving signature, `(None, None)`
        for any size; when set, a `BestExporter` and a `LatestExporter` write
        SavedModels under `export/`.
      evaluator_timeout_secs: as a separate evaluator (TF_CONFIG task "evaluator"),
        give up with an error after this long without a new checkpoint.
      reporters: extra reporter builders run after every evaluation (gin's
        `REPORTERS`; see `core.evaluation.build_reporters`).
      progress_every_secs: seconds between progress lines.
      stream: where progress and results are printed (default stdout).
      warm_start_from: fine-tune from a template model directory or checkpoint, or a
        Keras .h5 weights file (`core/warm_start.py`); only a run that starts from
        scratch uses it, a resumed one continues from its own checkpoint.
      warm_start_skip: regex (searched) of the variables never warm-started; by
        default the final `logits` layer, whose shape follows the number of classes.
      strategy: None (one process; or, in a TF_CONFIG cluster with ps tasks,
        Estimator's asynchronous between-graph replication), or a synchronous
        strategy from `core/cluster.py`: `MultiWorkerMirrored` across TF_CONFIG's
        chief and workers, `Mirrored` on this host's devices (docs/distributed.md).

    Under TF_CONFIG (docs/distributed.md) the role decides: the "chief" owns the
    model directory and trains; a "worker" trains; a "ps" holds variables and
    exits once the chief and every worker are done; the "evaluator" follows the
    chief's checkpoints (`core.evaluation.follow_trainer`) and runs the reporters.

    Returns:
      The last evaluation's results record (see `core/results.py`), or None.
    """
    stream = stream or sys.stdout
    if not model_dir:
        raise ConfigError("no model directory: pass --model_dir or set MODEL_DIR in the gin file")
    task = model_fn.task
    for name, input_fn in (("train", train_input_fn), ("eval", eval_input_fn)):
        if type(input_fn.task) is not type(task):
            raise ConfigError(
                f"{name}/make_input_fn reads {input_fn.task.name} labels but build_model_fn has a {task.name} task: "
                "bind both to %TASK"
            )
    best_metric = best_metric or task.headline
    higher_is_better = task.higher_is_better(best_metric) if higher_is_better is None else higher_is_better
    eval_dir = os.path.join(model_dir, "eval")

    def make_reporters():
        return evaluation.build_reporters(
            model_dir,
            eval_dir,
            task,
            reporters,
            eval_input_fn.num_examples,
            training_run=True,
            best_metric=best_metric,
            higher_is_better=higher_is_better,
            export_image_size=export_image_size,
            stream=stream,
            filenames=evaluation.filenames(eval_input_fn),
            best_rule=best_rule,
        )

    task_type, task_index = cluster.task()
    if task_type == "evaluator":  # TF_CONFIG: a separate evaluator process.
        estimator = Estimator(model_fn=model_fn, model_dir=model_dir)
        final_marker = cluster.final_marker(model_dir, train_steps)
        records = results.read_records(eval_dir)
        if records and records[-1]["global_step"] == final_marker():  # A finished job, run again.
            step = records[-1]["global_step"]
            print(f"evaluator: the final step {step} is evaluated already; nothing to do", file=stream)
            return records[-1]
        return evaluation.follow_trainer(
            estimator, eval_input_fn, make_reporters(), train_steps, evaluator_timeout_secs, stream, final_marker
        )
    cluster.check_strategy(strategy)
    if task_type == "ps":  # Holds variables; Estimator's own ps would never exit.
        cluster.run_ps(model_dir, train_steps, stream)
        return None
    if task_type == "worker":  # Trains; the chief owns the model directory.
        _run_worker(
            model_dir, model_fn, train_input_fn, eval_input_fn, train_steps, eval_every_steps, seed,
            keep_checkpoint_max, strategy, task_index, evaluator_timeout_secs, progress_every_secs, stream,
        )  # fmt: skip
        return None

    def diagnose():  # Names the bad file and record, read again after a failure.
        return train_input_fn.diagnose() or eval_input_fn.diagnose()

    def trained():
        return guard.trained_past_step_0(model_dir)

    # A failing step is never saved, so the checkpoints on disk stay as they were; a run
    # that fails before training anything leaves the directory as it found it (the
    # snapshot of what was there is taken once the lock is ours, so a second trainer
    # refused by the lock never touches the first one's files).
    with guard.ModelDirLock(model_dir), guard.leaves_no_trace(model_dir, trained), reported(diagnose):
        latest = guard.repair_latest_checkpoint(model_dir, log=lambda line: print(line, file=stream))
        step = checkpoint_step(latest) if latest else None
        if latest is None:
            cluster.clear_done(model_dir)
        stopped = cluster.read_done(model_dir, "chief", train_steps=train_steps)
        if early_stopping_evals and stopped and stopped.get("early_stopped") and stopped["final_step"] == step:
            print(
                f"{model_dir}: stopped early at step {step} (early_stopping_evals); nothing to do "
                "(train_and_evaluate.early_stopping_evals = 0 trains on)",
                file=stream,
            )
            records = results.read_records(eval_dir)
            return records[-1] if records else None
        if step is not None and step >= train_steps:
            cluster.mark_done(model_dir, "chief", final_step=step, checkpoint=latest, train_steps=train_steps)
            records = results.read_records(eval_dir)
            print(
                f"{model_dir}: already trained to step {step} (train_steps={train_steps}); nothing to do.",
                file=stream,
            )
            if records:
                print(results.format_table(records[-1]), file=stream)
            return records[-1] if records else None

        settings = None
        if warm_start_from and latest:
            print(f"warm start: ignored, {model_dir} resumes from its own {latest}", file=stream)
        elif warm_start_from:  # Here only as the chief (or alone): the chief initializes the variables.
            plan = warm_start.prepare(warm_start_from, warm_start_skip, model_dir, model_fn, train_input_fn, seed)
            print(plan.line, file=stream, flush=True)
            settings = plan.settings
        estimator = build_estimator(
            model_fn, model_dir, seed, eval_every_steps, keep_checkpoint_max, settings, strategy
        )
        if latest:
            variables = guard.model_variables(model_fn, train_input_fn, estimator.config)
            guard.check_model_matches(model_dir, latest, variables, gin.operative_config_str())
        progress = ProgressHook(train_steps, progress_every_secs, stream)
        local_steps = LocalSteps()
        train_hooks = [progress, local_steps, gin.tf.GinConfigSaverHook(model_dir, summarize_config=True)]
        if early_stopping_evals:
            stop_if = (
                tf.estimator.experimental.stop_if_no_increase_hook
                if higher_is_better
                else tf.estimator.experimental.stop_if_no_decrease_hook
            )
            train_hooks.append(
                stop_if(
                    estimator,
                    best_metric,
                    max_steps_without_increase=early_stopping_evals * eval_every_steps,
                    run_every_secs=None,
                    run_every_steps=eval_every_steps,
                )
            )
        train_spec = tf.estimator.TrainSpec(
            input_fn=train_input_fn, max_steps=train_steps, hooks=train_hooks, saving_listeners=[progress.listener]
        )
        eval_spec = tf.estimator.EvalSpec(
            input_fn=eval_input_fn,
            steps=None,  # The whole eval set, partial last batch included.
            exporters=make_reporters(),
            hooks=[gin.tf.GinConfigSaverHook(eval_dir, summarize_config=True, include_step_in_filename=False)],
            start_delay_secs=0,
            throttle_secs=0,  # Cadence is set in steps, by save_checkpoints_steps.
        )
        start = time.time()
        print(
            f"training {model_dir} to step {train_steps}, evaluating every {eval_every_steps} steps",
            file=stream,
            flush=True,
        )
        tf.estimator.train_and_evaluate(estimator, train_spec, eval_spec)
        final = tf.train.latest_checkpoint(model_dir)
        final_step = checkpoint_step(final)
        # What the evaluator and the parameter servers wait for; with asynchronous
        # workers the final step may be past train_steps, with early stopping before it.
        cluster.mark_done(
            model_dir,
            "chief",
            final_step=final_step,
            checkpoint=final,
            local_steps=local_steps.count,
            train_steps=train_steps,
            early_stopped=final_step < train_steps,
        )
        if cluster.cluster():  # The evaluator evaluates it, maybe not yet.
            print(f"done in {time.time() - start:.0f}s: final step {final_step}", file=stream, flush=True)
            return None
        records = results.read_records(eval_dir)
        last = records[-1] if records else None
        if last:
            print(
                f"done in {time.time() - start:.0f}s: step {last['global_step']}, "
                f"{best_metric} {last['metrics'].get(best_metric, float('nan')):.4f}; results in {eval_dir}",
                file=stream,
                flush=True,
            )
        return last


def _run_worker(
    model_dir, model_fn, train_input_fn, eval_input_fn, train_steps, eval_every_steps, seed,
    keep_checkpoint_max, strategy, task_index, timeout_secs, progress_every_secs, stream,
):  # fmt: skip
    """A TF_CONFIG worker: trains with the chief until the global step reaches `train_steps`."""
    latest = tf.train.latest_checkpoint(model_dir)
    if latest and checkpoint_step(latest) >= train_steps:  # Restarted after the job ended: nothing to train.
        cluster.mark_done(model_dir, "worker", task_index, local_steps=0, train_steps=train_steps)
        print(f"worker {task_index}: {model_dir} is trained to step {train_steps}; nothing to do", file=stream)
        return
    estimator = build_estimator(model_fn, model_dir, seed, eval_every_steps, keep_checkpoint_max, strategy=strategy)
    local_steps = LocalSteps()
    train_spec = tf.estimator.TrainSpec(
        input_fn=train_input_fn,
        max_steps=train_steps,
        hooks=[ProgressHook(train_steps, progress_every_secs, stream), local_steps],
    )
    eval_spec = tf.estimator.EvalSpec(input_fn=eval_input_fn, steps=None, start_delay_secs=0, throttle_secs=0)
    if strategy is None:
        # Asynchronous: a worker whose session comes up before the chief has initialized
        # the variables sleeps 30 s (SessionManager's recovery_wait_secs), so wait for the
        # chief's first checkpoint, saved right after initialization. (A synchronous
        # worker must not wait: the chief's first save is a collective it joins.)
        waited = time.time()
        while not tf.train.latest_checkpoint(model_dir):
            if time.time() - waited > timeout_secs:
                raise TrainerGoneError(
                    f"worker {task_index}: no checkpoint from the chief in {model_dir} after {timeout_secs:g} s"
                )
            time.sleep(0.2)
    print(f"worker {task_index}: training {model_dir} to step {train_steps}", file=stream, flush=True)
    tf.estimator.train_and_evaluate(estimator, train_spec, eval_spec)
    # A synchronous worker's own checkpoints (written only because saving is collective).
    own_copy = os.path.join(model_dir, f"tmp_worker_{task_index}")
    if tf.io.gfile.exists(own_copy):
        tf.io.gfile.rmtree(own_copy)
    cluster.mark_done(
        model_dir,
        "worker",
        task_index,
        local_steps=local_steps.count,
        joined_at=local_steps.first_global_step,
        train_steps=train_steps,
    )
    print(f"worker {task_index}: done ({local_steps.count} steps of its own)", file=stream, flush=True)
