"""Turns what goes wrong into one line that names the file, record or value at fault."""

import contextlib
import re

import tensorflow as tf

from core.runtime import first_line
from data import schema


class RunError(RuntimeError):
    """Training or evaluation stopped; the message is one line for the user."""


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


def diagnose_files(files) -> str:
    """Reads every record of `files` and names the first bad one; None if all are fine.

    Run only after a failure (it reads everything): a corrupt or truncated record,
    or a record that is not an Example with DeepLab's image and mask keys.
    """
    for path in files:
        index = 0
        try:
            for record in tf.compat.v1.io.tf_record_iterator(path):
                try:
                    example = tf.train.Example.FromString(record)
                except Exception:  # noqa: BLE001  Any decode failure means "not an Example".
                    return f"{path}: record {index} is not a tf.train.Example"
                keys = example.features.feature
                if schema.IMAGE_ENCODED not in keys or schema.MASK_ENCODED not in keys:
                    return (
                        f"{path}: record {index} is not an image/mask Example "
                        f"(no {schema.IMAGE_ENCODED} or {schema.MASK_ENCODED})"
                    )
                index += 1
        except tf.errors.DataLossError as error:
            return f"{path}: record {index} is corrupt or truncated ({first_line(error)})"
    return None


def describe(error: BaseException, files=()) -> str:
    """One line for an error stopping training or evaluation."""
    if isinstance(error, tf.errors.OpError):
        line = assertion_line(error.message)
        if line:
            return line
    # A reader or parse failure: name the file and record by reading them. TensorFlow
    # raises UnicodeDecodeError when a parse error quotes a record's raw bytes.
    data_errors = (tf.errors.DataLossError, tf.errors.InvalidArgumentError, UnicodeDecodeError)
    if isinstance(error, data_errors) and files:
        found = diagnose_files(files)
        if found:
            return found
    if isinstance(error, tf.errors.OpError):
        return re.sub(r"\{\{[^}]*\}\}\s*", "", first_line(error.message) or type(error).__name__)[:500]
    return first_line(error)


@contextlib.contextmanager
def reported(files=(), error_type=None):
    """Turns a TensorFlow failure inside the block into `error_type` (RunError) with one line.

    The line names the step, file, record or value at fault (see `describe`).
    """
    try:
        yield
    except (tf.errors.OpError, UnicodeDecodeError) as error:
        raise (error_type or RunError)(describe(error, files)) from None
