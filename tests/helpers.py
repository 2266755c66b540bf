"""Test helpers: run the entry points as a user would, read event files back."""

import glob
import os
import subprocess
import sys

from tests.conftest import REPO_ROOT

_ZYGOTE = {}


def python():
    """The interpreter for a test's Python subprocess: tests/zygote.py's client, which forks a
    server of this test process that imported TensorFlow once (about 2.5 s saved a process).
    Its children see the same files, flags, exit codes and signals; not a fresh start-up (what
    TensorFlow prints while it loads) nor a SIGKILL that waits for the death of the command:
    tests of those use `sys.executable`."""
    if "python" not in _ZYGOTE:
        import atexit
        import tempfile

        from tests import zygote

        directory = tempfile.mkdtemp(prefix="zygote")  # A short path: a socket's is at most 107 bytes.
        servers = []
        atexit.register(_stop_zygote, servers, directory)
        server, socket_path = zygote.start(directory)
        servers.append(server)
        os.environ[zygote.SOCKET_ENV] = socket_path  # The clients find their server here.
        _ZYGOTE["python"] = os.path.join(directory, "python")
    return _ZYGOTE["python"]


def _stop_zygote(servers, directory):
    import shutil

    for server in servers:
        server.kill()
        server.wait()
    shutil.rmtree(directory, ignore_errors=True)


def run_script(script, *args, check=True, timeout=600, fresh=False):
    """Runs `python script args...` from the repo root; returns the CompletedProcess.
    `fresh`: a new interpreter (`sys.executable`), for tests of what a start-up prints;
    otherwise `python()`."""
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    result = subprocess.run(
        [sys.executable if fresh else python(), os.path.join(REPO_ROOT, script), *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{script} exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result


def checkpoint_values(path):
    """`{variable name: value}` of a checkpoint: a model directory's latest, or a checkpoint path."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(path))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def event_tags(directory):
    """`{tag: [steps]}` over every event file directly in `directory` (TensorBoard's reader)."""
    from tensorboard.backend.event_processing import event_file_loader

    tags = {}
    for path in sorted(glob.glob(os.path.join(directory, "events.out.tfevents.*"))):
        for event in event_file_loader.LegacyEventFileLoader(path).Load():
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append(event.step)
    return tags


# evaluate.py's own flags, as the keyword arguments of its root (`core.evaluation.evaluate`).
_EVALUATE_FLAGS = {
    "checkpoint": str,
    "all_checkpoints": bool,
    "continuous": bool,
    "timeout_secs": float,
    "subset": str,
    "eval_name": str,
    "eval_set": str,
    "worst_k": int,
}


def run_in_process(script, *args, check=True):
    """`run_script` for train.py and evaluate.py without a new interpreter: the same flags
    (--gin_file, --gin_param, --model_dir, and evaluate.py's own), gin parsed strictly and op
    determinism set as `core.cli.init` does, the root run under `core.cli.call` (a UserError:
    one line on stderr, return code 1). Returns a CompletedProcess of its return code and
    what it printed. For tests not about the process boundary: signals, a real exit status,
    a lock held by another process and start-up need `run_script`."""
    import contextlib
    import io
    import logging

    import gin

    from common import determinism
    from core import cli, configurables

    gin_files, gin_params, kwargs = [], [], {}
    for arg in args:
        name, has_value, value = arg.removeprefix("--").partition("=")
        if name == "gin_file":
            gin_files.append(os.path.join(REPO_ROOT, value))  # run_script's working directory.
        elif name == "gin_param":
            gin_params.append(value)
        elif name == "model_dir":
            kwargs["model_dir"] = value
        elif script == "evaluate.py" and name in _EVALUATE_FLAGS:
            kind = _EVALUATE_FLAGS[name]
            kwargs[name] = (value.lower() != "false" if has_value else True) if kind is bool else kind(value)
        else:
            raise ValueError(f"run_in_process: {script} {arg} is not handled here; use run_script")
    root = {"train.py": "train_and_evaluate", "evaluate.py": "evaluate"}[script]

    def main(argv):
        del argv
        configurables.parse_gin(gin_files, gin_params)
        configurables.op_determinism()
        getattr(configurables, root)(**kwargs)

    stdout, stderr = io.StringIO(), io.StringIO()
    # TensorFlow's and absl's error logs, which a process would print on its stderr.
    logs = logging.StreamHandler(stderr)
    logs.setLevel(logging.ERROR)
    logs.setFormatter(logging.Formatter("%(levelname)s:%(name)s:%(message)s"))
    logging.getLogger().addHandler(logs)
    gin.clear_config()
    was_deterministic = determinism.enabled()  # Process-wide: the tests after this one run as before it.
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = cli.call(main, [script])
    finally:
        gin.clear_config()
        determinism.configure(was_deterministic)
        logging.getLogger().removeHandler(logs)
    result = subprocess.CompletedProcess([script, *args], code, stdout.getvalue(), stderr.getvalue())
    if check and code != 0:
        raise AssertionError(f"{script} returned {code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result
