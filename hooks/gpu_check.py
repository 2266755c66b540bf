"""`GpuOpCheck`: the ops op determinism refuses on a GPU, found before the first step."""

import sys

import tensorflow as tf

from common.determinism import enabled, gpu_refusals
from common.errors import ConfigError


class GpuOpCheck(tf.compat.v1.train.SessionRunHook):
    """Checks the graph once, before its session starts: `gpu_refusals` under op determinism.

    Added to every mode by `build_model_fn`. With a GPU visible a refusal fails the run
    (a ConfigError naming the op and the file) before the first step, where TensorFlow
    would fail at the op's first run, perhaps at the first evaluation an hour in; on a
    CPU, where the op runs, each refusal is a one-line warning.
    """

    def begin(self):
        if not enabled():
            return
        refusals = gpu_refusals(tf.compat.v1.get_default_graph())
        if refusals and tf.config.list_physical_devices("GPU"):
            raise ConfigError(str(refusals[0]))
        for refusal in refusals:
            print(f"warning: on a GPU this would fail: {refusal}", file=sys.stderr, flush=True)
