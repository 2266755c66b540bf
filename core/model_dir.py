"""A model directory's life around a training run: one trainer at a time, nothing left
behind by a run that fails before it trains, and the state a run resumes from.

`prepare(...)` is the one context manager the training root enters: it takes the lock,
snapshots the directory (a failed first run leaves it as it found it), repairs a torn
newest checkpoint, clears the done markers of an earlier job, and says whether there is
anything left to do; inside it the root builds the estimator and trains.
"""

import contextlib
import fcntl
import glob
import os
import re
import shutil
import socket
import time
from typing import NamedTuple

import tensorflow as tf

from common import files
from common.errors import ModelDirError, reported
from core import checkpoints, cluster

LOCK_FILE = ".trainer.lock"
WRITER_LOCK_FILE = ".writer.lock"


class DirectoryLock:
    """An exclusive `flock` on a directory for the life of the process (or the `with`):
    a killed process never leaves a lock behind that blocks the next one.

    Args:
      directory: the directory (created if missing; removed again on release if this
        lock made it and nothing else was put in it).
      name: the lock file's name in it.
      doing: what the holder is doing there, for the refusal ("trained", "evaluated").
      advice: what the refused user can do.
    """

    def __init__(self, directory: str, name: str, doing: str, advice: str):
        self._path = os.path.join(directory, name)
        self._doing, self._advice = doing, advice
        self._file = None
        self._created_dir = False

    def acquire(self):
        directory = os.path.dirname(self._path)
        check_directory(directory)
        self._created_dir = _topmost_missing(directory)
        try:
            os.makedirs(directory, exist_ok=True)
            handle = open(self._path, "a+")
        except OSError as error:
            raise ModelDirError(f"cannot write in {directory}: {error.strerror or error}") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise ModelDirError(f"{directory} is already being {self._doing} by {holder}; {self._advice}") from None
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
            # What this lock made (the directory, and its parents it made) goes again if
            # nothing but the lock was put in it.
            made, path = self._created_dir, self._path
            while (
                made
                and os.path.isdir(os.path.dirname(path))
                and os.listdir(os.path.dirname(path)) == [os.path.basename(path)]
            ):
                if os.path.dirname(path) == made:
                    shutil.rmtree(made, ignore_errors=True)
                    break
                path = os.path.dirname(path)

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def ModelDirLock(model_dir: str) -> DirectoryLock:  # noqa: N802  A lock, named as one.
    """One trainer per model directory."""
    return DirectoryLock(model_dir, LOCK_FILE, "trained", "stop that trainer or use another --model_dir")


def EvalDirLock(eval_dir: str) -> DirectoryLock:  # noqa: N802
    """One writer per eval directory: two would append the same results and collide in its event files."""
    return DirectoryLock(eval_dir, WRITER_LOCK_FILE, "evaluated", "wait for it to end or use another --eval_name")


def _topmost_missing(directory: str):
    """The outermost of `directory` and its parents that does not exist yet (None: it exists)."""
    missing = None
    while directory and not os.path.exists(directory):
        missing, directory = directory, os.path.dirname(directory)
    return missing


# What an interrupted save leaves: TensorFlow's atomic writes (`model.ckpt-10.meta.tmp<32 hex>`,
# `graph.pbtxt.tmp<hex>`), the sharded saver's `model.ckpt-10_temp/` folder, Estimator's
# `temp-<timestamp>` exports, and `common.files.write_atomic`'s `.<name>.<random>.tmp`.
_LEFTOVER = re.compile(
    r"(\.tmp[0-9a-f]{32}$|^model\.ckpt-\d+_temp$|^temp-\d+$|^\.[^/]+\.[a-z0-9_]{8}\.tmp$|^\.events\.out\.tfevents\..+\.repair\.tmp$)"
)


def remove_leftovers(model_dir: str, log=print):
    """Removes what interrupted saves and exports left in `model_dir`, its eval and export
    folders (only this process writes there: it holds the lock), with one line."""
    found = []
    for folder in [
        model_dir,
        *glob.glob(os.path.join(model_dir, "eval*")),
        *glob.glob(os.path.join(model_dir, "export", "*")),
    ]:
        if not os.path.isdir(folder):
            continue
        for name in os.listdir(folder):
            path = os.path.join(folder, name)
            if _LEFTOVER.search(name) and not name.endswith(".lock"):
                if os.path.isdir(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.remove(path)
                found.append(os.path.relpath(path, model_dir))
    if found:
        log(f"removed {len(found)} leftover(s) of an interrupted save in {model_dir}: {', '.join(sorted(found)[:4])}")


def repair_event_files(directory: str, log=print):
    """Cuts a truncated or corrupt TensorBoard event file in `directory` back to its last
    whole record (a kill or a full disk while it was written); the original goes to `torn/`
    with one line. Early stopping reads these files, and TensorFlow's reader stops at a
    torn record with `DataLossError`."""
    for path in sorted(glob.glob(os.path.join(directory, "events.out.tfevents.*"))):
        records = []
        try:
            for record in tf.compat.v1.io.tf_record_iterator(path):
                records.append(record)
        except tf.errors.DataLossError:
            repaired = os.path.join(directory, f".{os.path.basename(path)}.repair.tmp")
            with tf.io.TFRecordWriter(repaired) as writer:
                for record in records:
                    writer.write(record)
            files.move_aside(path, f"kept its first {len(records)} record(s)", log)
            os.replace(repaired, path)


def check_directory(path: str):
    """A ModelDirError naming `path` when it cannot be a directory (a file, a dangling link)."""
    if os.path.islink(path) and not os.path.exists(path):
        raise ModelDirError(f"{path} is a symbolic link to {os.readlink(path)}, which does not exist")
    if os.path.exists(path) and not os.path.isdir(path):
        raise ModelDirError(f"{path} is a file, not a directory")


def read_only(path: str) -> bool:
    """Whether `path` is a directory this process cannot write in (a read-only mount, permissions)."""
    return os.path.isdir(path) and not os.access(path, os.W_OK)


@contextlib.contextmanager
def leaves_no_trace(directory: str, keep_if=lambda: False):
    """On a failure inside the block, removes what the block added to `directory`.

    A first run that stops on bad data or a bad config must leave the directory as it
    found it, or the corrected rerun is refused ("was trained with num_classes = 4")
    although nothing was trained. A directory that did not exist is removed whole;
    otherwise only the entries the block created go. `keep_if()` is asked first: when
    it says the run made progress worth keeping (a checkpoint past step 0), nothing is
    removed.
    """
    existed = os.path.isdir(directory)
    before = set(os.listdir(directory)) if existed else set()
    try:
        yield
    except BaseException:
        if os.path.isdir(directory) and not keep_if():
            if not existed:
                shutil.rmtree(directory, ignore_errors=True)
            else:
                for name in set(os.listdir(directory)) - before:
                    path = os.path.join(directory, name)
                    if os.path.isdir(path) and not os.path.islink(path):
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        os.remove(path)
        raise


def trained_past_step_0(model_dir: str) -> bool:
    """Whether `model_dir` holds a checkpoint of a step above 0 (real training progress)."""
    return checkpoints.step_of(tf.train.latest_checkpoint(model_dir) if os.path.isdir(model_dir) else None) > 0


class Resume(NamedTuple):
    """Where a training run starts from.

    Attributes:
      checkpoint: the checkpoint it resumes from (None: a fresh start).
      step: that checkpoint's global step (None: a fresh start).
      finished: why there is nothing left to train (already at `train_steps`, or stopped
        early at this step), a line for the user; None when there is.
    """

    checkpoint: str
    step: int
    finished: str


@contextlib.contextmanager
def prepare(model_dir: str, train_steps: int, early_stopping: bool, diagnose=None, log=print, eval_dirs=("eval",)):
    """Prepares `model_dir` for training to `train_steps`; yields a `Resume`.

    Inside the block: this process holds the directory's lock (a second trainer is
    refused with one line); a failure before any step is saved removes what the block
    added (the snapshot of what was there is taken once the lock is ours, so a refused
    second trainer never touches the first one's files); a TensorFlow failure becomes one
    line naming the file and record (`diagnose`, see `common.errors.reported`).

    Args:
      model_dir: the run's directory (created if missing).
      train_steps: the step budget; a directory trained to it is finished.
      early_stopping: whether early stopping is on (a run that stopped early is finished).
      diagnose: `() -> str or None`, names the bad record after a data failure.
      log: where lines about a repair go.
      eval_dirs: the run's eval directories (`eval`, or `eval_<set>` for each evaluation
        set), locked and repaired with the model directory.
    """
    check_directory(model_dir)
    if read_only(model_dir):  # A finished run on a read-only mount still shows its results.
        latest = tf.train.latest_checkpoint(model_dir)
        step = checkpoints.step_of(latest)
        if step < train_steps:
            raise ModelDirError(f"{model_dir} is read-only: cannot train it (its latest step is {max(step, 0)})")
        yield Resume(latest, step, f"{model_dir}: already trained to step {step} (read-only); nothing to do.")
        return
    # The training's own evaluations write model_dir/eval (eval_<set>, one per evaluation set);
    # in a TF_CONFIG cluster the separate evaluator does, and takes those locks itself.
    with contextlib.ExitStack() as held:
        held.enter_context(ModelDirLock(model_dir))
        held.enter_context(leaves_no_trace(model_dir, lambda: trained_past_step_0(model_dir)))
        for eval_dir in [] if cluster.cluster() else eval_dirs:
            held.enter_context(EvalDirLock(os.path.join(model_dir, eval_dir)))
        remove_leftovers(model_dir, log)
        for eval_dir in eval_dirs:
            repair_event_files(os.path.join(model_dir, eval_dir), log)
        with reported(diagnose):
            latest = checkpoints.repair_latest_checkpoint(model_dir, log=log)
            step = checkpoints.checkpoint_step(latest) if latest else None
            if latest is None:
                cluster.clear_done(model_dir)  # Markers of an earlier job say nothing about this one.
            stopped = cluster.read_done(model_dir, "chief", train_steps=train_steps)
            finished = None
            if early_stopping and stopped and stopped.get("early_stopped") and stopped["final_step"] == step:
                finished = (
                    f"{model_dir}: stopped early at step {step} (early_stopping_evals); nothing to do "
                    "(best_checkpoint.early_stopping_evals = 0 trains on)"
                )
            elif step is not None and step >= train_steps:
                cluster.mark_done(model_dir, "chief", final_step=step, checkpoint=latest, train_steps=train_steps)
                finished = f"{model_dir}: already trained to step {step} (train_steps={train_steps}); nothing to do."
            yield Resume(latest, step, finished)
