"""Fine-tuning: `WARM_START_FROM` turned into Estimator's `WarmStartSettings`.

Two sources, told apart by what the path is:

- a checkpoint of this template (a model directory, its `best/` folder, or a
  checkpoint path such as `runs/synthetic/model.ckpt-2000`): every variable of the
  network and head whose name is in it is restored, trainable ones and batch-norm
  moving statistics alike, except those `WARM_START_SKIP` matches (by default the
  final `logits` layer, whose shape follows the number of classes). Optimizer slots
  and the global step are never restored: training starts at step 0.
- a Keras HDF5 weights file (`model.save_weights('x.h5')`, e.g. the ImageNet
  MobileNetV2 files of keras-applications): weight `w` of layer `L` is the graph
  variable `L/w` (a Keras layer in a graph-mode model_fn names its variables
  `<layer name>/<weight name>`). The matching weights are written once, before
  training, as a name-based checkpoint in `model_dir/warm_start/`, and that
  checkpoint warm-starts the run.

The variables to restore are listed explicitly (Estimator's single-regex form would
only consider trainable variables, leaving batch-norm statistics behind), after
checking every shape in Python, so a mismatch is one line naming the file and the
variable rather than a stack trace from inside the graph.

Estimator applies warm start only when the model directory has no checkpoint yet
(`Estimator._train_with_estimator_spec`); `core.experiment` does not even prepare it
for a resumed run.
"""

import os
import re
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from common.errors import ConfigError, DataError, first_line
from core import checkpoints

DEFAULT_SKIP = r"(^|/)logits/"  # The final layer of every shipped network.
WARM_START_DIR = "warm_start"
_CHECKPOINT_SUFFIX = re.compile(r"\.(index|meta|data-\d+-of-\d+)$")
_SHOWN = 4


class Plan(NamedTuple):
    """What a warm start restores: Estimator's settings, the variables by fate, and the one-line account."""

    settings: tf.estimator.WarmStartSettings
    restored: list  # Restored from the source.
    skipped: list  # Matched by WARM_START_SKIP.
    absent: list  # Not in the source (their own initializers).
    line: str


def source_kind(path: str):
    """`("checkpoint", checkpoint path)` or `("h5", path)` for a WARM_START_FROM value.

    Raises:
      ConfigError: nothing usable at `path`.
    """
    if os.path.isdir(path):
        checkpoint = tf.train.latest_checkpoint(path)
        if checkpoint is None:
            raise ConfigError(f"WARM_START_FROM: no checkpoint in {path}")
        return "checkpoint", checkpoint
    prefix = _CHECKPOINT_SUFFIX.sub("", path)
    if tf.io.gfile.exists(prefix + ".index"):
        return "checkpoint", prefix
    if os.path.isfile(path):
        import h5py

        if h5py.is_hdf5(path):
            return "h5", path
        raise ConfigError(f"WARM_START_FROM: {path} is neither a TensorFlow checkpoint nor a Keras .h5 weights file")
    raise ConfigError(f"WARM_START_FROM: no such model directory, checkpoint or .h5 file: {path}")


def read_h5_weights(path: str) -> dict:
    """`{"<layer>/<weight>": array}` of a Keras 2 HDF5 weights file (`save_weights` or `save`).

    Raises:
      DataError: not a Keras 2 weights file, or unreadable.
    """
    import h5py

    def text(value):
        return value.decode("utf8") if isinstance(value, bytes) else str(value)

    weights = {}
    try:
        with h5py.File(path, "r") as f:
            root = f["model_weights"] if "model_weights" in f else f  # A whole saved model, or weights only.
            if "layer_names" not in root.attrs:
                raise DataError(
                    f"WARM_START_FROM: {path} is not a Keras 2 HDF5 weights file (no layer_names; "
                    "write it with tf.keras's model.save_weights('....h5'))"
                )
            for layer in map(text, root.attrs["layer_names"]):
                group = root[layer]
                for weight in map(text, group.attrs.get("weight_names", [])):
                    short = weight.rsplit("/", 1)[-1].split(":")[0]  # 'Conv1/kernel:0' -> 'kernel'
                    weights[f"{layer}/{short}"] = np.asarray(group[weight])
    except (OSError, KeyError) as error:
        raise DataError(f"WARM_START_FROM: cannot read {path}: {first_line(error)}") from None
    return weights


class WarmStart:
    """Fine-tuning: where the first run of a model directory takes its weights from
    (gin: `warm_start.*`, the macros WARM_START_FROM and WARM_START_SKIP).

    Args:
      source: a template model directory or checkpoint, or a Keras .h5 weights file;
        None: train from scratch. Only a run that starts from scratch uses it; a resumed
        one continues from its own checkpoint.
      skip: regex (searched) of the variables never restored; by default the final
        `logits` layer, whose shape follows the number of classes.
    """

    def __init__(self, source: str = None, skip: str = DEFAULT_SKIP):
        self.source, self.skip = source, skip

    def plan(self, model_dir: str, model_fn, input_fn, seed: int = 0) -> "Plan":
        """`prepare` for this source and skip (see there)."""
        return prepare(self.source, self.skip, model_dir, model_fn, input_fn, seed)


def prepare(warm_start_from: str, skip: str, model_dir: str, model_fn, input_fn, seed: int = 0) -> Plan:
    """`plan` for the model a model_fn builds (its variables listed in a throwaway graph)."""
    return plan(
        warm_start_from,
        lambda: checkpoints.model_variables(model_fn, input_fn, seed, tf.estimator.ModeKeys.PREDICT),
        model_dir,
        skip,
    )


def plan(warm_start_from: str, list_variables, model_dir: str, skip: str = DEFAULT_SKIP) -> Plan:
    """Checks a warm start against the model's variables and prepares its settings.

    Args:
      warm_start_from: a template model directory or checkpoint, or a Keras .h5 file.
      list_variables: `() -> {name: shape}` of the model (`core.checkpoints.model_variables` in PREDICT mode),
        called once the source is known to exist.
      model_dir: the run's directory; an .h5 file is converted into
        `model_dir/warm_start/`.
      skip: regex (searched) of the variables never restored; None or '' for none.

    Returns:
      A `Plan` whose `settings` go to the Estimator and whose `line` says which
      variables were restored and which were not.

    Raises:
      ConfigError: no such source; none of the model's variables in it; a variable
        whose shape differs from the source's (named, with both shapes).
      DataError: an unreadable .h5 file.
    """
    try:
        pattern = re.compile(skip) if skip else None
    except re.error as error:
        raise ConfigError(f"WARM_START_SKIP: {skip!r} is not a regular expression ({error})") from None
    path = os.path.expanduser(warm_start_from)  # Named as given in every message.
    kind, source = source_kind(path)
    if kind == "checkpoint":
        try:
            shapes, values = dict(tf.train.list_variables(source)), None
        except tf.errors.OpError as error:
            raise DataError(f"WARM_START_FROM: cannot read checkpoint {source}: {first_line(error.message)}") from None
    else:
        values = read_h5_weights(source)
        shapes = {name: list(value.shape) for name, value in values.items()}
    variables = list_variables()
    restored, skipped, absent = [], [], []
    for name, shape in variables.items():
        if pattern is not None and pattern.search(name):
            skipped.append(name)
        elif name not in shapes:
            absent.append(name)
        elif list(shapes[name]) != list(shape):
            raise ConfigError(
                f"WARM_START_FROM {source}: {name} is {list(shapes[name])} there and {list(shape)} in this model "
                "(another network width or alpha? WARM_START_SKIP leaves variables out)"
            )
        else:
            restored.append(name)
    if not restored:
        raise ConfigError(
            f"WARM_START_FROM {source}: none of this model's {len(variables)} variables is in it "
            f"(the model has {_names(list(variables))}; the file has {_names(sorted(shapes))})"
        )
    line = f"warm start: {len(restored)} variables from {source}"
    if kind == "h5":
        checkpoint = os.path.join(model_dir, WARM_START_DIR, "model.ckpt")
        _write_checkpoint(checkpoint, {name: values[name] for name in restored})
        unused = len(values) - len(restored)
        line += f" (converted to {checkpoint}; {unused} of its {len(values)} weights unused)"
        source = checkpoint
    line += f"; skipped by WARM_START_SKIP: {_names(skipped)}; not in it: {_names(absent)}"
    settings = tf.estimator.WarmStartSettings(
        ckpt_to_initialize_from=source,
        # Full names (`get_collection` regexes matched against `name:0`) from
        # GLOBAL_VARIABLES, so batch-norm moving statistics are restored too.
        vars_to_warm_start=[f"{re.escape(name)}:0$" for name in restored],
    )
    return Plan(settings, restored, skipped, absent, line)


def _write_checkpoint(prefix: str, tensors: dict):
    """Writes `{name: array}` as a name-based TensorFlow checkpoint at `prefix`."""
    os.makedirs(os.path.dirname(prefix), exist_ok=True)
    names = list(tensors)
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        save = tf.raw_ops.SaveV2(
            prefix=prefix,
            tensor_names=names,
            shape_and_slices=[""] * len(names),
            tensors=[tf.constant(tensors[name]) for name in names],
        )
        session.run(save)


def _names(names: list) -> str:
    if not names:
        return "none"
    shown = ", ".join(names[:_SHOWN])
    return f"{shown}, ... ({len(names)})" if len(names) > _SHOWN else shown
