"""Run by tests/test_robustness.py inside `unshare -rm` (a private mount namespace, so the
file system below vanishes with it): training whose model directory fills its disk.

    python tests/full_disk_run.py MOUNT DEST train.py-command...

A 64 MB tmpfs is mounted at MOUNT; the command trains into MOUNT/model; once its first
evaluation is written the disk is filled up. When that run has stopped, the filler is
removed (the cause gone) and the same command runs again. The model directory is copied
to DEST; one JSON line says both exit codes and the first run's last stderr line.
"""

import json
import os
import shutil
import subprocess
import sys
import time


def main():
    mount, dest, *command = sys.argv[1:]
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", mount], check=True)
    command = command + [f"--model_dir={os.path.join(mount, 'model')}"]
    results = os.path.join(mount, "model", "eval", "results.jsonl")
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not os.path.exists(results) and first.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    filler = os.open(os.path.join(mount, "filler"), os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(filler, b"\0" * (1 << 16))
    except OSError:  # No space left on device: the disk is full.
        pass
    os.close(filler)
    _, stderr = first.communicate(timeout=300)
    os.remove(os.path.join(mount, "filler"))
    second = subprocess.run(command, capture_output=True, text=True, timeout=300)
    shutil.copytree(os.path.join(mount, "model"), dest)
    lines = stderr.strip().splitlines() or [""]
    print(json.dumps({"first": first.returncode, "line": lines[-1], "stderr": stderr[-3000:],
                      "second": second.returncode,
                      "second_stderr": second.stderr[-2000:], "second_stdout": second.stdout[-2000:]}))  # fmt: skip


if __name__ == "__main__":
    main()
