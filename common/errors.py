"""One error model for every command-line program.

A *user error* (a bad config, bad data, a bad model directory or path) is a
`UserError`: `core.cli.run` prints its first line as `error: ...` and exits 1.
Anything else is a bug in the program and keeps its traceback.

This module imports nothing from the project, so any folder may raise these; it is the
one home of the project's error classes (a tool raises one of these, not its own).
"""

import contextlib
import re


class UserError(Exception):
    """Something the user can fix; the message is one line that names it."""


class ConfigError(UserError):
    """A gin config or command-line flag that cannot work (unknown binding, unset macro...)."""


class DataError(UserError, ValueError):
    """Input data at fault: the message names the file, record or value (also a ValueError)."""


class ModelDirError(UserError):
    """A model directory that cannot be used as asked."""


class RunError(UserError):
    """Training or evaluation stopped on a failure the user can act on (bad record, NaN loss)."""


class EvaluationError(RunError):
    """An evaluation that cannot go on, or results that cannot be read or compared."""


class TrainerGoneError(RunError):
    """No new checkpoint came for the timeout: the trainer died or stalled."""


class Interrupted(UserError):
    """SIGTERM or SIGINT stopped training or an evaluation cleanly (`hooks/preemption.py`).

    Not a mistake: `core.cli` prints the line as it is (no `error:`) and exits with the
    shell's code for the signal, 128 + its number (143 for SIGTERM, 130 for SIGINT).
    """

    def __init__(self, message: str, signal_number: int):
        super().__init__(message)
        self.exit_code = 128 + signal_number


def first_line(error) -> str:
    """The first line of an error (or message): gin and TensorFlow append context below it."""
    text = str(error).strip()
    if text:
        return text.splitlines()[0]
    return type(error).__name__ if isinstance(error, BaseException) else ""


def assertion_line(message: str):
    """The data of a failed `tf.debugging.Assert`, as one line; None if not one."""
    match = re.search(r"assertion failed: (.*)", message)
    if not match:
        return None
    # TF prints each datum in brackets: "[text] [9] [file] [x.png]"; texts may hold brackets.
    body = match.group(1).splitlines()[0].strip()
    if body.startswith("[") and body.endswith("]"):
        body = body[1:-1]
    return " ".join(part.strip().strip("'\"") for part in body.split("] [") if part.strip())


def describe(error: BaseException, diagnose=None) -> str:
    """One line for a TensorFlow failure stopping training or evaluation.

    Args:
      error: the exception.
      diagnose: optional `() -> str or None` that names the bad file and record
        by reading the data again (run only for reader and parse failures).
    """
    import tensorflow as tf

    cause = cause_line(error.message) if isinstance(error, tf.errors.OpError) else first_line(error)
    if isinstance(error, tf.errors.OpError):
        line = assertion_line(error.message)
        if line:
            return line
    # A reader or parse failure: name the file and record by reading them. TensorFlow
    # raises UnicodeDecodeError when a parse error quotes a record's raw bytes.
    data_errors = (tf.errors.DataLossError, tf.errors.InvalidArgumentError, UnicodeDecodeError)
    if isinstance(error, data_errors) and diagnose is not None:
        found = diagnose()
        if found:
            return found if cause in found else f"{found} (TensorFlow: {cause})"
    return cause


def cause_line(message: str) -> str:
    """The line of a TensorFlow error message that says what went wrong.

    TensorFlow 2.15 puts "Graph execution error:" first, the cause ("jpeg::Uncompress
    failed...", "No space left on device", "Key: ... Data types don't match...") below
    it, then node names in `[[...]]`; this keeps the cause, without node markers.
    """
    for line in message.splitlines():
        line = re.sub(r"\{\{[^}]*\}\}\s*", "", line).strip()
        if not line or line.startswith("[[") or line in ("Graph execution error:",):
            continue
        if line.startswith(("Detected at node", "Node:", "File ", "Original stack trace", "Traceback")):
            continue
        return line[:500]
    return first_line(message) or "TensorFlow error"


@contextlib.contextmanager
def reported(diagnose=None, error_type=RunError):
    """Turns a TensorFlow failure inside the block into `error_type` with one line.

    The line names the step, file, record or value at fault (see `describe`).
    """
    import tensorflow as tf

    try:
        yield
    except (tf.errors.OpError, UnicodeDecodeError) as error:
        raise error_type(describe(error, diagnose)) from error  # The whole message: --verbose.
