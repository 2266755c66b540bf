"""Logs the running per-class IoU during an evaluation, every N evaluation batches."""

import sys

import tensorflow as tf

from common.errors import ConfigError
from metrics.bootstrap import iou_and_dice


def per_class_logging(every_n_steps: int = 100, stream=None):
    """A hook builder: `(tensors) -> PerClassIoULoggingHook` on the task's confusion matrix.

    In gin: `EVAL_HOOKS = [@per_class_logging()]` and `per_class_logging.every_n_steps = 20`.
    """

    def build(tensors):
        metric_ops = tensors["eval_metric_ops"]
        if "confusion_matrix" not in metric_ops:
            raise ConfigError(f"per_class_logging: the {tensors['task'].name} task has no confusion_matrix metric")
        _, update = metric_ops["confusion_matrix"]
        return PerClassIoULoggingHook(update, tensors["task"].class_names, every_n_steps, stream)

    return build


class PerClassIoULoggingHook(tf.compat.v1.train.SessionRunHook):
    """Every `every_n_steps` evaluation batches, prints the running per-class IoU.

    It fetches the confusion matrix's update op, whose value is the running matrix
    after this batch (the same op the evaluation runs anyway, so nothing is
    computed twice), and only on the steps it reports.
    """

    def __init__(self, confusion_update, class_names, every_n_steps: int = 100, stream=None):
        self._confusion_update = confusion_update
        self._class_names = list(class_names)
        self._every_n_steps = every_n_steps
        self._stream = stream or sys.stdout

    def begin(self):
        self._step = 0

    def before_run(self, run_context):
        del run_context
        self._step += 1
        if self._step % self._every_n_steps == 0:
            return tf.compat.v1.train.SessionRunArgs(self._confusion_update)
        return None

    def after_run(self, run_context, run_values):
        del run_context
        if run_values.results is None:
            return
        iou, _ = iou_and_dice(run_values.results)
        cells = "  ".join(f"{name} {value:.4f}" for name, value in zip(self._class_names, iou))
        print(f"  eval batch {self._step}: IoU {cells}", file=self._stream, flush=True)
