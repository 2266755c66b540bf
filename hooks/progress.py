"""A one-line training progress report: step/max, loss, steps/s, ETA."""

import sys
import time

import tensorflow as tf


def _format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


class ProgressHook(tf.compat.v1.train.SessionRunHook):
    """Prints `step 200/3000  loss 0.1234  21.3 steps/s  ETA 2m11s` every `every_secs`.

    The loss shown is the mean over the steps since the last line. The loss is
    found in the LOSSES collection, so the hook needs nothing from the model_fn.

    Pass it as a training hook and its `listener` as a saving listener: then it
    prints a line at every checkpoint, just before `train_and_evaluate`
    evaluates it, and leaves the evaluation's time out of steps/s.
    """

    def __init__(self, max_steps: int, every_secs: float = 10.0, stream=None):
        self._max_steps = max_steps
        self._every_secs = every_secs
        self._stream = stream or sys.stdout
        self.listener = _SaveListener(self)

    def begin(self):
        self._global_step = tf.compat.v1.train.get_global_step()
        # Estimator appends the EstimatorSpec's loss to LOSSES last, after any
        # component losses the model_fn added (summing them would double count).
        losses = tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.LOSSES)
        self._loss = losses[-1] if losses else None
        # State is set here: the checkpoint saver's after_create_session, which
        # calls after_save, may run before ours.
        self._step = self._last_step = 0
        self._last_time = time.time()
        self._loss_sum, self._loss_count = 0.0, 0
        self._paused, self._pause_start = 0.0, None
        self._in_run = self._counted = False

    def after_create_session(self, session, coord):
        del coord
        self._step = self._last_step = int(session.run(self._global_step))
        self._last_time, self._paused, self._pause_start = time.time(), 0.0, None

    def before_run(self, run_context):
        del run_context
        self._in_run = True
        fetches = {"global_step": self._global_step}
        if self._loss is not None:
            fetches["loss"] = self._loss
        return tf.compat.v1.train.SessionRunArgs(fetches)

    def after_run(self, run_context, run_values):
        del run_context
        if not self._counted:
            # The global step, read in the same run: in a cluster it counts every
            # trainer's steps (alone, the read may come before this step's increment).
            self._step = max(self._step + 1, int(run_values.results["global_step"]))
        self._in_run = self._counted = False
        if "loss" in run_values.results:
            self._loss_sum += float(run_values.results["loss"])
            self._loss_count += 1
        now = time.time()
        if self._pause_start is not None:  # An evaluation ran since after_save.
            self._paused += now - self._pause_start
            self._pause_start = None
        if now - self._last_time >= self._every_secs:
            self._report(now)

    def _after_save(self, global_step_value):
        if self._in_run:
            # The saver's after_run comes before ours: this step is done but not
            # counted yet. Count it now, and not again in after_run.
            self._step, self._counted = global_step_value, True
        if self._step > self._last_step:
            self._report(time.time())
        self._pause_start = time.time()

    def _report(self, now):
        if self._step == self._last_step:
            return
        rate = (self._step - self._last_step) / max(now - self._last_time - self._paused, 1e-9)
        loss = f"{self._loss_sum / self._loss_count:.4f}" if self._loss_count else "n/a"
        eta = max(self._max_steps - self._step, 0) / rate if rate > 0 else float("inf")
        print(
            f"step {self._step}/{self._max_steps}  loss {loss}  {rate:.1f} steps/s  ETA {_format_duration(eta)}",
            file=self._stream,
            flush=True,
        )
        self._last_time, self._last_step = now, self._step
        self._loss_sum, self._loss_count, self._paused = 0.0, 0, 0.0


class _SaveListener(tf.compat.v1.train.CheckpointSaverListener):
    def __init__(self, hook):
        self._hook = hook

    def after_save(self, session, global_step_value):
        del session
        self._hook._after_save(global_step_value)
