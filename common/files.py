"""State files written so they cannot tear, and read so a torn one never sticks a run.

Every file the template writes in a model directory goes through `write_atomic` (a
temporary file beside it, fsync, rename, fsync of the folder): a crash or a full disk
leaves the old file or the new one, never half of one. A file torn anyway (written by an
older version, by hand, or by another tool) is moved aside by the readers into `torn/`
beside it, with one line naming it and what was kept, and the run goes on.
"""

import json
import os
import tempfile
import time

TORN_DIR = "torn"


def write_atomic(path: str, data) -> str:
    """Writes `data` (str or bytes) to `path` atomically; returns `path`."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(handle, 0o666 & ~umask())  # As open() would make it (mkstemp's is owner-only).
        with os.fdopen(handle, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_directory(directory)
    return path


def umask() -> int:
    """The process's umask (reading it means setting it: it is put back at once)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_directory(directory: str):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # Some file systems cannot sync a folder; the rename is still atomic.
    finally:
        os.close(fd)


def move_aside(path: str, reason: str, log=print) -> str:
    """Moves a torn or corrupt file into `torn/` beside it (never deleted), with one line."""
    aside_dir = os.path.join(os.path.dirname(path), TORN_DIR)
    os.makedirs(aside_dir, exist_ok=True)
    aside = os.path.join(aside_dir, f"{os.path.basename(path)}.{time.strftime('%Y%m%d-%H%M%S')}")
    os.replace(path, aside)
    log(f"{path} is torn ({reason}); moved to {aside}")
    return aside


def read_json(path: str, log=print):
    """The JSON object in `path`; None when there is none, or when it is torn (moved aside)."""
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return None
    try:
        value = json.loads(text)
    except ValueError as error:
        move_aside(path, f"not JSON: {error}", log)
        return None
    if not isinstance(value, dict):
        move_aside(path, "not a JSON object", log)
        return None
    return value


def replace_folder(staged: str, final: str):
    """Puts the finished folder `staged` in the place of `final` (which may not exist).

    Two renames on one file system: the old folder is moved aside, the new one moved in,
    then the old one deleted. Until the second rename `final` is the old folder, after it
    the new one; a crash between the two (a moment) leaves the old one at
    `.<name>.old-<pid>` beside it, which `restore_folder` puts back.
    """
    import shutil

    aside = os.path.join(os.path.dirname(os.path.abspath(final)), f".{os.path.basename(final)}.old-{os.getpid()}")
    if os.path.lexists(final):
        os.replace(final, aside)
    os.replace(staged, final)
    _fsync_directory(os.path.dirname(os.path.abspath(final)))
    shutil.rmtree(aside, ignore_errors=True)


def restore_folder(final: str, log=print):
    """Puts back a folder `replace_folder` moved aside and never replaced (a crash between its renames)."""
    import glob
    import shutil

    parent, name = os.path.dirname(os.path.abspath(final)), os.path.basename(final)
    for aside in sorted(glob.glob(os.path.join(parent, f".{glob.escape(name)}.old-*"))):
        if os.path.lexists(final):  # Replaced, then interrupted before the old one was deleted.
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.replace(aside, final)
            log(f"{final}: put back from {aside} (a replacement was interrupted)")
