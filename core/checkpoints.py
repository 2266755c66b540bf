"""Checkpoints: their steps, their files, a torn one repaired, a model that cannot restore one named.

- `repair_latest_checkpoint`: a truncated or half-deleted newest checkpoint is moved
  aside and training resumes from the previous good one, never from 0.
- `check_model_matches`: resuming with a model whose variables differ from the
  checkpoint's (another network, width, number of classes...) fails naming the gin
  binding that changed, not with a restore stack trace. What differs is judged from the
  variables themselves; the binding is found by parsing the saved operative config and
  the current one with gin's own parser (`common/gin_text.py`).
- `model_variables`: the variables a model_fn creates, listed in a throwaway graph
  (for that check, and for the warm start's plan).
"""

import os
import re
import shutil

import tensorflow as tf

from common import gin_text
from common.errors import ModelDirError, first_line

TORN_DIR = "torn"
SAVED_CONFIG = "operative_config-0.gin"
# The configurable whose bindings (and everything they reference) shape the model.
MODEL_ROOT = "build_model_fn"
# The flag Estimator's early-stopping hook keeps in the checkpoint (a global variable).
EARLY_STOPPING_VARIABLE = "signal_early_stopping/STOP"


def checkpoint_step(checkpoint_path: str) -> int:
    """The global step stored in a checkpoint (read from it, not from its name)."""
    return int(tf.train.load_variable(checkpoint_path, tf.compat.v1.GraphKeys.GLOBAL_STEP))


def step_of(path: str) -> int:
    """The global step in a checkpoint's name (`.../model.ckpt-500` -> 500); -1 if none."""
    match = re.search(r"-(\d+)$", path or "")
    return int(match.group(1)) if match else -1


def listed_checkpoints(model_dir: str) -> list:
    """Every checkpoint the `checkpoint` state file names, in step order (existing or not).

    The state file may hold absolute paths or paths relative to the directory, and
    the directory may have moved since: each is taken by name inside `model_dir`.
    """
    state = tf.train.get_checkpoint_state(model_dir)
    if state is None:
        return []
    names = list(state.all_model_checkpoint_paths) + [state.model_checkpoint_path]
    return sorted({os.path.join(model_dir, os.path.basename(name)) for name in names}, key=step_of)


def checkpoint_problem(path: str):
    """Why `path` cannot be restored (a short reason), or None if every tensor reads."""
    if not tf.io.gfile.exists(path + ".index"):
        return "its .index file is missing"
    try:
        reader = tf.train.load_checkpoint(path)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except Exception as error:  # noqa: BLE001  A torn file fails in many ways (IndexError, DataLossError...).
        return first_line(error)[:200]
    return None


def repair_latest_checkpoint(model_dir: str, log=print):
    """Falls back from a torn newest checkpoint to the newest good one.

    Torn checkpoints' files are moved to `model_dir/torn/` and the `checkpoint`
    state file is rewritten to the good one.

    Returns:
      The checkpoint training will resume from, or None for a fresh directory.

    Raises:
      ModelDirError: checkpoints exist but none can be restored (naming the newest).
    """
    paths = listed_checkpoints(model_dir)
    torn = []
    while paths:
        problem = checkpoint_problem(paths[-1])
        if problem is None:
            break
        torn.append((paths.pop(), problem))
    if not torn:
        return paths[-1] if paths else None
    if not paths:
        newest, problem = torn[0]
        raise ModelDirError(f"no readable checkpoint in {model_dir}: the newest, {newest}, is torn ({problem})")
    aside = os.path.join(model_dir, TORN_DIR)
    os.makedirs(aside, exist_ok=True)
    for path, problem in torn:
        for name in tf.io.gfile.glob(path + ".*"):
            shutil.move(name, os.path.join(aside, os.path.basename(name)))
        log(f"checkpoint {path} is torn ({problem}); moved to {aside}/")
    tf.compat.v1.train.update_checkpoint_state(model_dir, paths[-1], all_model_checkpoint_paths=paths)
    log(f"resuming from {paths[-1]}")
    return paths[-1]


def model_variables(model_fn, input_fn, seed: int = 0, mode=tf.estimator.ModeKeys.TRAIN) -> dict:
    """`{name: shape}` of the variables `model_fn` creates in `mode`, in creation order.

    Built in a throwaway graph on placeholders shaped like `input_fn`'s elements. TRAIN
    lists everything a checkpoint holds (optimizer slots, the global step); PREDICT only
    the model's own (batch-norm statistics included), what a warm start restores.
    """
    with tf.Graph().as_default():
        spec = input_fn().element_spec
        features, labels = tf.nest.map_structure(lambda s: tf.compat.v1.placeholder(s.dtype, s.shape), spec)
        labels = None if mode == tf.estimator.ModeKeys.PREDICT else labels
        model_fn(features, labels, mode, {}, tf.estimator.RunConfig(tf_random_seed=seed))
        return {v.op.name: v.shape.as_list() for v in tf.compat.v1.global_variables()}


def parse_bindings(config_text: str) -> dict:
    """`{"[scope/]selector.param": value text}` of a gin config (`common/gin_text.py`).

    Macros are resolved (`%X` -> X's value); includes and imports are ignored.
    """
    macros, bindings = gin_text.parse(config_text)

    def text(value, depth=0):
        ref = gin_text.reference(value)
        if ref and ref[0] == "macro":  # %NAME
            return text(macros[ref[1]], depth + 1) if ref[1] in macros and depth < 10 else f"%{ref[1]}"
        if ref and ref[0] == "constant":  # %gin.REQUIRED and other constants.
            return f"%{ref[1]}"
        if isinstance(value, (list, tuple)):
            inner = ", ".join(text(item, depth) for item in value)
            return f"[{inner}]" if isinstance(value, list) else f"({inner})"
        if ref:  # A configurable reference, @name or @name().
            return f"@{ref[1]}{'()' if ref[2] else ''}"
        return repr(value)

    return {key: text(value) for key, value in bindings.items()}


def _model_bindings(bindings: dict) -> list:
    """The keys of the bindings that shape the model: MODEL_ROOT's and those it references."""
    selectors, frontier = set(), [MODEL_ROOT]
    while frontier:
        selector = frontier.pop()
        if selector in selectors:
            continue
        selectors.add(selector)
        for key, value in bindings.items():
            if key.rpartition(".")[0].rpartition("/")[2] == selector:
                frontier += [name.rstrip("()") for name in _references(value)]
    return [key for key in bindings if key.rpartition(".")[0].rpartition("/")[2] in selectors]


def _references(value_text: str) -> list:
    return re.findall(r"@([\w.]+(?:\(\))?)", value_text)


def check_model_matches(model_dir: str, checkpoint: str, variables: dict, current_config: str):
    """Raises ModelDirError if `checkpoint` cannot be restored into a model with `variables`.

    Args:
      model_dir: the model directory (its `operative_config-0.gin` explains a mismatch).
      checkpoint: the checkpoint training would resume from.
      variables: `{name: shape}` of the model to build (`model_variables`).
      current_config: this run's operative gin config (`gin.operative_config_str()`).
    """
    saved = dict(tf.train.list_variables(checkpoint))
    mismatch = next(
        ((name, shape) for name, shape in sorted(variables.items()) if saved.get(name) != shape),
        None,
    )
    if mismatch is None:
        return
    if mismatch[0] == EARLY_STOPPING_VARIABLE:
        raise ModelDirError(
            f"{checkpoint} was trained without early stopping: its checkpoint has no {EARLY_STOPPING_VARIABLE} "
            "to restore; set best_checkpoint.early_stopping_evals only for a new --model_dir"
        )
    changed = []
    saved_path = os.path.join(model_dir, SAVED_CONFIG)
    if os.path.exists(saved_path):
        with open(saved_path) as f:
            before = parse_bindings(f.read())
        now = parse_bindings(current_config)
        keys = _model_bindings(before) + [key for key in _model_bindings(now) if key not in before]
        changed = [
            f"{key} = {before.get(key, '(unset)')}, this config has {now.get(key, '(unset)')}"
            for key in keys
            if before.get(key) != now.get(key)
        ]
    name, shape = mismatch
    what = (
        "; ".join(changed[:3])
        if changed
        else (f"variable {name} is {saved.get(name, 'absent')} in the checkpoint, {shape} in this model")
    )
    raise ModelDirError(
        f"{model_dir} was trained with {what}: the checkpoint cannot be restored; "
        "use another --model_dir or the original config"
    )
