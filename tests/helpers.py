"""Test helpers: run the entry points as a user would, read event files back."""

import glob
import os
import subprocess
import sys

from tests.conftest import REPO_ROOT


def run_script(script, *args, check=True, timeout=600):
    """Runs `python script args...` from the repo root; returns the CompletedProcess."""
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    result = subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, script), *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{script} exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result


def event_tags(directory):
    """`{tag: [steps]}` over every event file directly in `directory` (TensorBoard's reader)."""
    from tensorboard.backend.event_processing import event_file_loader

    tags = {}
    for path in sorted(glob.glob(os.path.join(directory, "events.out.tfevents.*"))):
        for event in event_file_loader.LegacyEventFileLoader(path).Load():
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append(event.step)
    return tags
