"""Safety checks around a model directory, run before training starts.

- `ModelDirLock`: one trainer per model directory (an `flock`, so a killed
  process never leaves a lock behind that blocks the next one).
- `repair_latest_checkpoint`: a truncated or half-deleted newest checkpoint is
  moved aside and training resumes from the previous good one, never from 0.
- `check_config_matches`: resuming with a different model shape fails naming the
  binding, not with a restore stack trace.
"""

import fcntl
import os
import re
import shutil
import socket
import time

import tensorflow as tf

from core.runtime import first_line

LOCK_FILE = ".trainer.lock"
TORN_DIR = "torn"
MODEL_SHAPE_BINDINGS = ("build_model_fn.num_classes", "build_model_fn.base_filters", "build_model_fn.depth")


class GuardError(RuntimeError):
    """A model directory that cannot be trained as asked, with a one-line reason."""


class ModelDirLock:
    """An exclusive lock on `model_dir` for the life of the process (or the `with`)."""

    def __init__(self, model_dir: str):
        self._path = os.path.join(model_dir, LOCK_FILE)
        self._file = None

    def acquire(self):
        os.makedirs(os.path.dirname(self._path), exist_ok=True)
        handle = open(self._path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise GuardError(
                f"{os.path.dirname(self._path)} is already being trained by {holder}; "
                "stop that trainer or use another --model_dir"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}")
        handle.flush()
        self._file = handle
        return self

    def release(self):
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


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
      GuardError: checkpoints exist but none can be restored (naming the newest).
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
        raise GuardError(f"no readable checkpoint in {model_dir}: the newest, {newest}, is torn ({problem})")
    aside = os.path.join(model_dir, TORN_DIR)
    os.makedirs(aside, exist_ok=True)
    for path, problem in torn:
        for name in tf.io.gfile.glob(path + ".*"):
            shutil.move(name, os.path.join(aside, os.path.basename(name)))
        log(f"checkpoint {path} is torn ({problem}); moved to {aside}/")
    tf.compat.v1.train.update_checkpoint_state(model_dir, paths[-1], all_model_checkpoint_paths=paths)
    log(f"resuming from {paths[-1]}")
    return paths[-1]


def _bindings(config_text: str) -> dict:
    """`{selector: value text}` of a gin config, macros resolved (`%X` -> X's value)."""
    values = {}
    for line in config_text.splitlines():
        match = re.match(r"^([\w./]+)\s*=\s*(.+?)\s*$", line)
        if match:
            values[match.group(1)] = match.group(2)
    return {key: values.get(value[1:], value) if value.startswith("%") else value for key, value in values.items()}


def check_config_matches(model_dir: str, current_config: str):
    """Raises GuardError if the model shape differs from the one `model_dir` was trained with.

    Compares `MODEL_SHAPE_BINDINGS` between the first saved operative config
    (`operative_config-0.gin`) and `current_config` (gin's `config_str()`).
    """
    saved_path = os.path.join(model_dir, "operative_config-0.gin")
    if not os.path.exists(saved_path) or not tf.train.latest_checkpoint(model_dir):
        return
    with open(saved_path) as f:
        saved = _bindings(f.read())
    current = _bindings(current_config)
    for key in MODEL_SHAPE_BINDINGS:
        if key in saved and key in current and saved[key] != current[key]:
            raise GuardError(
                f"{model_dir} was trained with {key} = {saved[key]}, this config has {current[key]}: "
                "the checkpoint cannot be restored; use another --model_dir or the original config"
            )
