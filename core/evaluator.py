"""A separate evaluator process that cannot be broken by its trainer.

Stock Estimator's evaluator (`train_and_evaluate` with TF_CONFIG task "evaluator")
crashes with "The passed save_path is not a valid checkpoint" when the trainer's
`keep_checkpoint_max` deletes the checkpoint it is about to read, can leave a
`temp-*` export behind when that happens mid-export, and waits forever when the
trainer dies. `follow_trainer` instead:

- copies each new checkpoint into a private snapshot before touching it, and
  evaluates and exports the snapshot: a checkpoint deleted before it could be
  copied is skipped and logged, never a crash;
- evaluates each step at most once, and the final step exactly once, then exits;
- gives up with an error after `timeout_secs` without a new checkpoint.
"""

import os
import shutil
import sys
import time

import tensorflow as tf

from core import guard, results


class TrainerGoneError(RuntimeError):
    """No new checkpoint came for the timeout: the trainer died or stalled."""


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
    return copy if guard.checkpoint_problem(copy) is None else None


def follow_trainer(model_dir, model_fn, eval_input_fn, exporters, final_step, timeout_secs, stream=None, poll=0.2):
    """Evaluates the trainer's checkpoints as they come, until `final_step`.

    Args:
      model_dir: the trainer's model directory.
      model_fn, eval_input_fn: as for training.
      exporters: run after each evaluation, on the snapshot (`build_exporters`).
      final_step: the trainer's last step (TRAIN_STEPS).
      timeout_secs: raise TrainerGoneError after this long without a new checkpoint.
      stream: where messages go.
      poll: seconds between looks at the checkpoint state.

    Returns:
      The final evaluation's result dict.
    """
    stream = stream or sys.stdout
    estimator = tf.estimator.Estimator(model_fn=model_fn, model_dir=model_dir)
    snapshot_dir = os.path.join(model_dir, "eval", ".snapshot")
    last_step, last_new = -1, time.time()
    print(f"evaluator: following {model_dir} until step {final_step}", file=stream, flush=True)
    while True:
        latest = tf.train.latest_checkpoint(model_dir)
        step = guard.step_of(latest)
        if step > last_step:
            last_step, last_new = step, time.time()  # Each step once, evaluated or skipped.
            copy = snapshot(latest, snapshot_dir)
            if copy is None:
                print(f"evaluator: {latest} was deleted before it could be read; skipped", file=stream, flush=True)
            else:
                result = estimator.evaluate(eval_input_fn, steps=None, checkpoint_path=copy)
                for exporter in exporters:
                    export_path = os.path.join(model_dir, "export", exporter.name)
                    # Exports read the snapshot; the results name the trainer's checkpoint.
                    source = latest if isinstance(exporter, results.ResultsReporter) else copy
                    exporter.export(estimator, export_path, source, result, step >= final_step)
                if step >= final_step:
                    shutil.rmtree(snapshot_dir, ignore_errors=True)
                    print(f"evaluator: evaluated the final step {step}; done.", file=stream, flush=True)
                    return result
        elif time.time() - last_new > timeout_secs:
            raise TrainerGoneError(
                f"evaluator: no new checkpoint in {model_dir} for {timeout_secs:g} s "
                f"(last step {last_step}, final step {final_step}): the trainer died or stalled"
            )
        time.sleep(poll)
