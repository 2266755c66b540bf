"""The shared main wrapper: one error model for every command-line program.

    from core import cli
    ...
    if __name__ == "__main__":
        cli.run(main)

A `common.errors.UserError` (bad config, bad data, bad model directory) prints one
line, `error: ...`, on stderr and exits 1; any other exception is a bug and keeps
its traceback.

Importing this module, the entry points' harness (never a library module), first hides
TensorFlow's C++ start-up chatter (cuDNN/cuFFT factory "errors" on CPU-only hosts): it
must be set before TensorFlow loads. Real failures still raise Python exceptions; set
TF_CPP_MIN_LOG_LEVEL yourself to see more.
"""

import errno
import os
import signal
import sys

from common import runtime

runtime.hide_native_logs()

from absl import app  # noqa: E402  After the line above, as every import below.

from common import determinism  # noqa: E402
from common.errors import Interrupted, UserError, first_line  # noqa: E402
from core import configurables  # noqa: E402

_verbose = False  # --verbose, as cli.init read it.
# OSErrors that are the machine's state, not a bug: one line, like a UserError.
_ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.EFBIG}


def call(main, argv) -> int:
    """Runs `main(argv)`; a UserError becomes one line on stderr and exit code 1 (an
    `Interrupted` run: its line, and 128 + the signal's number)."""
    try:
        code = main(argv)
    except Interrupted as stopped:
        print(first_line(stopped), file=sys.stderr, flush=True)
        return stopped.exit_code
    except KeyboardInterrupt:  # Ctrl-C where no handler of the program's own turned it into an Interrupted.
        print("interrupted (Ctrl-C)", file=sys.stderr, flush=True)
        return 128 + signal.SIGINT
    except OSError as raised:  # The machine's fault, not the program's: a full disk, a read-only folder.
        # Raised inside a gin configurable, the error is gin's copy, its message extended and
        # its errno, strerror and filename gone; the original is its context.
        error = raised.__context__ if raised.errno is None and isinstance(raised.__context__, OSError) else raised
        if error.errno not in _ENVIRONMENT_ERRNOS:
            raise
        where = f"{error.filename}: " if error.filename else ""
        print(f"error: {where}{first_line(error.strerror or error)}", file=sys.stderr, flush=True)
        return 1
    except RuntimeError as raised:  # TensorBoard's event writer: "<file>; No space left on device".
        line = _environment_line(raised)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr, flush=True)
        return 1
    except UserError as error:
        if _verbose and error.__cause__ is not None:  # TensorFlow's whole message, under the line.
            print(f"{type(error.__cause__).__name__}: {error.__cause__}", file=sys.stderr, flush=True)
        print(f"error: {first_line(error)}", file=sys.stderr, flush=True)
        return 1
    return code or 0


def _environment_line(error):
    """`<file>: <reason>` of a RuntimeError that TensorFlow's file writers raise for the
    machine's state (`"<file>; No space left on device"`), or None for any other."""
    line = first_line(error)
    for number in _ENVIRONMENT_ERRNOS:
        reason = os.strerror(number)
        if line.endswith("; " + reason):
            return f"{line[: -len(reason) - 2]}: {reason}"
    return None


def run(main):
    """`absl.app.run(main)` with the one error model (see `call`)."""
    app.run(lambda argv: sys.exit(call(main, argv)))


def _precision() -> str:
    """`precision <policy>` as gin's PRECISION chose it (`'auto'`: and that it was auto)."""
    import gin

    from models import precision

    try:
        chosen = gin.query_parameter("%PRECISION")
    except ValueError:  # A config without base.gin's macro: build_model_fn's default.
        chosen = "float32"
    policy = precision.resolve(chosen)
    return f"precision {policy}" + (" (auto)" if chosen == "auto" else "")


def init(flag_values, report_to=None) -> dict:
    """Quiet logs, strict gin, op determinism (gin's DETERMINISTIC) from the shared flags;
    prints the devices and the precision in one line, to stdout or `report_to` (stderr where
    stdout is a result, e.g. tools/export.py's path: under `'auto'` it says what the export
    computes in).

    Returns:
      `{"model_dir": ...}` when --model_dir was given, else `{}`: keyword arguments
      for a root, so the flag overrides the config's MODEL_DIR.
    """
    global _verbose
    _verbose = bool(flag_values.verbose)
    runtime.quiet(flag_values.verbose)
    configurables.parse_gin(flag_values.gin_file, flag_values.gin_param or [])
    configurables.op_determinism()
    print(f"{determinism.describe()}; {_precision()}", file=report_to or sys.stdout, flush=True)
    return {"model_dir": flag_values.model_dir} if flag_values.model_dir else {}
