"""Graceful preemption: SIGTERM (Kubernetes, a preemptible VM) or SIGINT (Ctrl-C) stops a
run at the next step boundary, with what it did kept, and one line.

- `SignalCatcher` (a context manager around a run) takes SIGTERM and SIGINT: the first is
  noted; a second ends the process at once, as the default handler would.
- `CheckpointSaver`, the training run's checkpoint hook (Estimator uses it instead of its
  own `CheckpointSaverHook`, and hangs its saving listeners, the evaluations among them,
  on it): it saves at multiples of `save_steps` whatever step a run resumes from, so an
  interrupted run evaluates the same steps as an uninterrupted one. After a signal it
  saves the step in flight (without evaluating it) and stops the run with `Interrupted`:
  "stopped by SIGTERM at step 133; checkpoint saved; rerun the same command to resume".
  The rerun resumes from it exactly, as from any checkpoint.
- `StopOnSignal`, for an evaluation (and for training under a distribution strategy,
  where saving is collective): after the batch or step in flight it stops with
  `Interrupted`. An evaluation stopped so writes nothing (results, CSV, best checkpoint
  and exports are written only once an evaluation is complete); the checkpoint it was
  evaluating is evaluated when the run resumes (`core/experiment.py`).

A signal arriving while TensorFlow runs a step is handled when the step returns: at most
one step (or one evaluation batch) later.
"""

import os
import signal
import threading

import tensorflow as tf

from common.errors import Interrupted

HANDLED = (signal.SIGTERM, signal.SIGINT)
RERUN = "rerun the same command to resume"


class SignalCatcher:
    """Notes the first SIGTERM or SIGINT while active; a second one ends the process at once.

    Only the main thread can take signals; elsewhere (a test's thread) it does nothing.
    """

    def __init__(self):
        self.received = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for number in HANDLED:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc):
        for number, previous in self._previous.items():
            signal.signal(number, previous)
        self._previous = {}

    def _handle(self, number, frame):
        del frame
        if self.received is not None:  # The second signal: no more waiting.
            signal.signal(number, signal.SIG_DFL)
            os.kill(os.getpid(), number)
            return
        self.received = number

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name


class CheckpointSaver(tf.compat.v1.train.CheckpointSaverHook):
    """Estimator's `CheckpointSaverHook`, on a fixed grid of steps and saving on a signal.

    Args:
      model_dir: where checkpoints go (`model.ckpt-<step>`, Estimator's saver and names).
      save_steps: save (and so evaluate) at every multiple of this step.
      catcher: the run's `SignalCatcher`.
    """

    def __init__(self, model_dir: str, save_steps: int, catcher: SignalCatcher):
        super().__init__(model_dir, save_steps=save_steps)
        self._save_steps, self._catcher = save_steps, catcher

    def after_create_session(self, session, coord):
        super().after_create_session(session, coord)  # Saves the starting step, as stock does.
        # Stock counts `save_steps` from the step a run resumes at (133 -> 383, 633, ...);
        # here the next save is the next multiple (250, 500, ...), as without the stop.
        step = self._timer.last_triggered_step()
        self._timer.update_last_triggered_step(step - step % self._save_steps)

    def after_run(self, run_context, run_values):
        super().after_run(run_context, run_values)
        if self._catcher.received is None:
            return
        session = run_context.session
        step = int(session.run(self._global_step_tensor))
        if step != self._timer.last_triggered_step():  # Not saved yet: saved, not evaluated.
            self._get_saver().save(session, self._save_path, global_step=step)
        raise Interrupted(
            f"stopped by {self._catcher.name} at step {step}; checkpoint saved; {RERUN}", self._catcher.received
        )


class StopOnSignal(tf.compat.v1.train.SessionRunHook):
    """After a signal, stops the run or evaluation in flight with `Interrupted`.

    Args:
      catcher: the run's `SignalCatcher`.
      what: what is stopped and what is kept, for the line (e.g. "during an evaluation;
        nothing of it was written").
    """

    def __init__(self, catcher: SignalCatcher, what: str):
        self._catcher, self._what = catcher, what

    def after_run(self, run_context, run_values):
        if self._catcher.received is not None:
            raise Interrupted(f"stopped by {self._catcher.name} {self._what}; {RERUN}", self._catcher.received)


def evaluation_stopper(catcher: SignalCatcher) -> StopOnSignal:
    """The hook that stops an evaluation on a signal, leaving nothing of it written."""
    return StopOnSignal(catcher, "during an evaluation; nothing of it was written")
