"""Mixed precision for any network, from one gin macro: `PRECISION`.

- `'float32'`: everything in float32 (the default).
- `'mixed_bfloat16'`: the network computes in bfloat16 with float32 variables (Keras'
  `mixed_bfloat16` policy). Native on CPUs with AMX or AVX512-BF16, NVIDIA GPUs from Ampere
  on and TPUs; bfloat16 has float32's range, so no loss scaling is needed.
- `'mixed_float16'`: the network computes in float16 with float32 variables; the optimizer
  scales the loss dynamically (`tf.compat.v1.mixed_precision.MixedPrecisionLossScaleOptimizer`,
  the wrapper for a v1 optimizer in a graph-mode model_fn) so small gradients survive
  float16's range, and skips a step whose gradients overflow (the weights kept, the scale
  halved, the global step not counted). For GPUs before Ampere.
- `'auto'`: `mixed_bfloat16` where this machine computes bfloat16 natively (the CPU flags
  `amx_bf16` or `avx512_bf16`, or a GPU of compute capability 8.0 or more), else `float32`.

`Precision(network, policy)` wraps a network: each call builds the network's layers under
the policy (Keras layers take the global policy when they are made, so the network's code
does not change: a fork's network gets it for free, but for a layer given a dtype of its
own) and casts its outputs to float32. So the logits, the loss, the softmax the metrics
read and the serving outputs are float32 whatever the policy, no metric is computed in the
low precision (each is float32 or float64, as in float32), and Keras' batch normalization
keeps its statistics in float32.
"""

import contextlib

import tensorflow as tf

from common.errors import ConfigError

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16", "auto")


def resolve(precision: str) -> str:
    """The Keras policy name for a `PRECISION` value (`'auto'` decided by this machine).

    Raises:
      ConfigError: a value that is not one of `PRECISIONS`.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"PRECISION = {precision!r}: one of {', '.join(map(repr, PRECISIONS))}")
    if precision != "auto":
        return precision
    return "mixed_bfloat16" if native_bfloat16() else "float32"


def native_bfloat16() -> bool:
    """Whether this machine computes bfloat16 natively: a GPU of compute capability >= 8.0, or
    (no GPU) a CPU with AMX or AVX512-BF16."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return all(
            (tf.config.experimental.get_device_details(gpu).get("compute_capability") or (0, 0)) >= (8, 0)
            for gpu in gpus
        )
    return bool(cpu()[1])


BFLOAT16_FLAGS = ("amx_bf16", "avx512_bf16")  # AMX tiles (Intel, from Sapphire Rapids); AVX512 dot products.


def cpu(path: str = "/proc/cpuinfo"):
    """`(model name, which of BFLOAT16_FLAGS it has)`, from an x86 /proc/cpuinfo (its first
    CPU's lines; all are alike). oneDNN runs bfloat16 on AMX where the CPU has it, else on
    AVX512-BF16: what bfloat16 buys depends on which (docs/benchmarks.md). `('', ())` without
    the file, and on an ARM machine, whose file has neither key ('auto' picks float32 there).
    """
    try:
        with open(path, errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return "", ()
    fields = {}
    for line in lines:  # A key's first value: the first CPU's.
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    return fields.get("model name", ""), tuple(flag for flag in BFLOAT16_FLAGS if flag in flags)


@contextlib.contextmanager
def policy_scope(policy: str):
    """Keras' global dtype policy set to `policy` inside the block, and put back after it."""
    previous = tf.keras.mixed_precision.global_policy()
    tf.keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        tf.keras.mixed_precision.set_global_policy(previous)


class Precision:
    """A network that runs under a Keras dtype policy and returns float32 outputs.

    Every attribute but the call is the wrapped network's (`input_multiple`, ...).
    """

    def __init__(self, network, policy: str):
        self.network, self.policy = network, policy

    def __call__(self, images, num_outputs, training=False, seed=0):
        with policy_scope(self.policy):
            outputs = self.network(images, num_outputs, training=training, seed=seed)
        return tf.cast(outputs, tf.float32)

    def __getattr__(self, name):
        return getattr(self.network, name)


def wrap(network, precision: str):
    """The network as the model_fn runs it under `precision` (itself, for float32)."""
    policy = resolve(precision)
    return network if policy == "float32" else Precision(network, policy)


def optimizer_for(optimizer, precision: str):
    """The optimizer the model_fn uses: with dynamic loss scaling under `mixed_float16`."""
    if resolve(precision) != "mixed_float16":
        return optimizer
    return tf.compat.v1.mixed_precision.MixedPrecisionLossScaleOptimizer(optimizer, loss_scale="dynamic")


def loss_scale(optimizer):
    """The current loss scale of a loss-scaling optimizer (a float32 scalar), or None."""
    scale = getattr(optimizer, "_loss_scale", None)
    return tf.cast(scale(), tf.float32) if callable(scale) else None
