"""The training root: RunConfig, Estimator, TrainSpec, EvalSpec, `train_and_evaluate`.

Gin configures `train_and_evaluate` (registered in `core/configurables.py`);
`train.py` parses flags and gin, then calls it.
"""

import functools
import os
import sys
import time

import gin.tf
import tensorflow as tf

from core import guard, results
from core.best import BestCheckpointKeeper, is_better
from core.errors import reported
from hooks.progress import ProgressHook
from models.serving import serving_input_receiver_fn


def build_estimator(model_fn, model_dir: str, seed: int, save_checkpoints_steps: int, keep_checkpoint_max: int):
    """A `tf.estimator.Estimator` with a seeded RunConfig."""
    run_config = tf.estimator.RunConfig(
        model_dir=model_dir,
        tf_random_seed=seed,
        save_checkpoints_steps=save_checkpoints_steps,
        save_checkpoints_secs=None,
        keep_checkpoint_max=keep_checkpoint_max,
        save_summary_steps=min(100, save_checkpoints_steps),
        log_step_count_steps=None,
    )
    return tf.estimator.Estimator(model_fn=model_fn, config=run_config)


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
    class_names,
    seed: int = 0,
    keep_checkpoint_max: int = 5,
    best_metric: str = "mean_iou",
    higher_is_better: bool = True,
    early_stopping_evals: int = 0,
    export_image_size=None,
    evaluator_timeout_secs: float = 600,
    progress_every_secs: float = 10.0,
    stream=None,
):
    """Trains for `train_steps`, evaluating every `eval_every_steps` and at the end.

    Evaluation runs after every checkpoint (one every `eval_every_steps`, and
    Estimator always saves and evaluates the final one), over the whole eval set.
    Each evaluation appends a line to `model_dir/eval/results.jsonl` and prints a
    table. Re-running a finished job does no work.

    Args:
      model_dir: where checkpoints, events and results go.
      model_fn: a plain model_fn (from `build_model_fn`).
      train_input_fn, eval_input_fn: from `make_input_fn`.
      train_steps: the step budget (`max_steps`).
      eval_every_steps: checkpoint and evaluate every this many steps.
      class_names: names for the per-class results.
      seed: graph-level seed (RunConfig.tf_random_seed).
      keep_checkpoint_max: checkpoints kept (the best one is kept aside anyway).
      best_metric, higher_is_better: what "best" means, for the best checkpoint
        (copied to `model_dir/best/`, named in `best.json`), the best SavedModel
        export and early stopping.
      early_stopping_evals: stop when `best_metric` has not improved for this many
        evaluations (0: never).
      export_image_size: `(height, width)` of the serving signature; when set, a
        `BestExporter` and a `LatestExporter` write SavedModels under `export/`.
      evaluator_timeout_secs: as a separate evaluator (TF_CONFIG task "evaluator"),
        give up with an error after this long without a new checkpoint.
      progress_every_secs: seconds between progress lines.
      stream: where progress and results are printed (default stdout).

    With TF_CONFIG naming this process the "chief", it trains (and a separate
    "evaluator" process evaluates); as the "evaluator", it follows the chief's
    checkpoints with `core.evaluator.follow_trainer`.

    Returns:
      The last evaluation's results record (see `core/results.py`), or None.
    """
    stream = stream or sys.stdout
    if not model_dir:
        raise ValueError("no model directory: pass --model_dir or set MODEL_DIR in the gin file")
    if tf.estimator.RunConfig().task_type == "evaluator":  # TF_CONFIG: a separate evaluator process.
        from core import evaluator

        exporters = build_exporters(
            model_dir, class_names, eval_input_fn, best_metric, higher_is_better, export_image_size, stream
        )
        with reported(getattr(eval_input_fn, "files", [])):
            return evaluator.follow_trainer(
                model_dir, model_fn, eval_input_fn, exporters, train_steps, evaluator_timeout_secs, stream
            )
    files = list(getattr(train_input_fn, "files", [])) + list(getattr(eval_input_fn, "files", []))
    # A failing step is never saved, so the checkpoints on disk stay as they were.
    with guard.ModelDirLock(model_dir), reported(files):
        guard.repair_latest_checkpoint(model_dir, log=lambda line: print(line, file=stream))
        guard.check_config_matches(model_dir, gin.config_str())
        eval_dir = os.path.join(model_dir, "eval")
        latest = tf.train.latest_checkpoint(model_dir)
        step = checkpoint_step(latest) if latest else None
        if step is not None and step >= train_steps:
            records = results.read_records(eval_dir)
            print(
                f"{model_dir}: already trained to step {step} (train_steps={train_steps}); nothing to do.",
                file=stream,
            )
            if records:
                print(results.format_table(records[-1]), file=stream)
            return records[-1] if records else None

        estimator = build_estimator(model_fn, model_dir, seed, eval_every_steps, keep_checkpoint_max)
        progress = ProgressHook(train_steps, progress_every_secs, stream)
        train_hooks = [progress, gin.tf.GinConfigSaverHook(model_dir, summarize_config=True)]
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
        exporters = build_exporters(
            model_dir, class_names, eval_input_fn, best_metric, higher_is_better, export_image_size, stream
        )
        eval_spec = tf.estimator.EvalSpec(
            input_fn=eval_input_fn,
            steps=None,  # The whole eval set, partial last batch included.
            exporters=exporters,
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
        records = results.read_records(eval_dir)
        last = records[-1] if records else None
        if last:
            print(
                f"done in {time.time() - start:.0f}s: step {last['global_step']}, "
                f"mean_iou {last['metrics'].get('mean_iou', float('nan')):.4f}; results in {eval_dir}",
                file=stream,
                flush=True,
            )
        return last


def build_exporters(model_dir, class_names, eval_input_fn, best_metric, higher_is_better, export_image_size, stream):
    """What runs after every evaluation: results, best checkpoint, SavedModel exports."""
    eval_dir = os.path.join(model_dir, "eval")
    exporters = [
        results.ResultsReporter(eval_dir, class_names, stream, getattr(eval_input_fn, "num_examples", None)),
        BestCheckpointKeeper(model_dir, best_metric, higher_is_better, stream),
    ]
    if export_image_size:
        receiver = serving_input_receiver_fn(*export_image_size)
        compare = functools.partial(_compare, metric=best_metric, higher_is_better=higher_is_better)
        exporters.append(tf.estimator.BestExporter("best", receiver, compare_fn=compare, exports_to_keep=1))
        exporters.append(tf.estimator.LatestExporter("latest", receiver, exports_to_keep=2))
    return exporters


def _compare(best_eval_result, current_eval_result, metric, higher_is_better):
    """BestExporter's compare_fn on a configurable metric and direction."""
    if best_eval_result is None or metric not in best_eval_result:
        return True
    return is_better(float(current_eval_result[metric]), float(best_eval_result[metric]), higher_is_better)
