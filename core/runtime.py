"""Process setup shared by the entry points: quiet logs, determinism, gin parsing.

Import this module before TensorFlow: it sets `TF_CPP_MIN_LOG_LEVEL` so the C++
start-up chatter never prints.
"""

import logging
import os
import re
import warnings

# 3 hides the C++ start-up noise (cuDNN/cuFFT factory "errors" on CPU-only hosts);
# real failures still raise Python exceptions. Set it yourself to see more.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Macros every dataset gin file must set (see configs/base.gin).
REQUIRED_MACROS = ("TRAIN_FILES", "VAL_FILES", "NUM_CLASSES", "CLASS_NAMES", "IMAGE_HEIGHT", "IMAGE_WIDTH")


def quiet(verbose: bool = False):
    """Hides TensorFlow's and Estimator's deprecation warnings and INFO logs."""
    import absl.logging
    import tensorflow as tf

    level = logging.INFO if verbose else logging.ERROR
    tf.get_logger().setLevel(level)
    tf.compat.v1.logging.set_verbosity(level)
    absl.logging.set_verbosity(absl.logging.INFO if verbose else absl.logging.ERROR)
    if not verbose:
        from tensorflow.python.util import deprecation

        deprecation._PRINT_DEPRECATION_WARNINGS = False
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module="keras")


def make_deterministic():
    """Turns on op determinism: same seed, same command, same numbers."""
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()


def parse_gin(gin_files=(), gin_params=()):
    """Parses gin files and bindings; unknown names fail here, before any graph.

    Includes resolve relative to the working directory, then to the repository
    root, so `include 'configs/base.gin'` works from anywhere.

    Raises:
      ValueError: when a required dataset macro is not set, naming it.
    """
    import gin
    import gin.tf  # noqa: F401  Registers TensorFlow's file reader and GinConfigSaverHook.

    from core import configurables  # noqa: F401  Registers the configurable builders.

    gin.add_config_file_search_path(REPO_ROOT)
    # Parse from the repository root so `include 'configs/base.gin'` resolves from any
    # working directory (gin's resource lookup trips on the `configs` folder otherwise);
    # the files named on the command line are taken relative to the caller's directory.
    gin_files = [os.path.abspath(path) for path in gin_files]
    caller_dir = os.getcwd()
    os.chdir(REPO_ROOT)
    try:
        gin.parse_config_files_and_bindings(gin_files, list(gin_params), skip_unknown=False, finalize_config=False)
    finally:
        os.chdir(caller_dir)
    missing = [name for name in REQUIRED_MACROS if not _macro_is_set(name)]
    if missing:
        raise ValueError(
            f"gin: macro(s) {', '.join(missing)} not set; a dataset gin file must set "
            f"{', '.join(REQUIRED_MACROS)} (see configs/synthetic.gin)"
        )
    try:
        gin.finalize()
    except ValueError as error:
        # Gin's own message appends the whole config; keep the line that matters.
        unset = re.search(r"No bindings specified for '(\S+)/gin\.macro'", str(error))
        if unset:
            raise ValueError(f"gin: macro {unset.group(1)} is used but never set") from None
        raise


def _macro_is_set(name: str) -> bool:
    import gin

    try:
        gin.query_parameter(f"{name}/macro.value")
    except ValueError:
        return False
    return True


def define_flags():
    """The flags every entry point shares: --gin_file, --gin_param, --model_dir, --verbose."""
    from absl import flags

    flags.DEFINE_multi_string("gin_file", None, "Gin config file(s), applied in order.")
    flags.DEFINE_multi_string("gin_param", None, "Gin bindings, e.g. 'TRAIN_STEPS = 100'; applied after the files.")
    flags.DEFINE_string("model_dir", None, "Model directory; overrides the config's MODEL_DIR.")
    flags.DEFINE_bool("verbose", False, "Show TensorFlow's INFO logs and deprecation warnings.")
    flags.mark_flag_as_required("gin_file")


def init_from_flags(flags_values) -> dict:
    """Quiet logs, op determinism, strict gin from the shared flags.

    Returns:
      `{"model_dir": ...}` when --model_dir was given, else `{}`: keyword arguments
      for a root, so the flag overrides the config's MODEL_DIR.
    """
    quiet(flags_values.verbose)
    make_deterministic()
    parse_gin(flags_values.gin_file, flags_values.gin_param or [])
    return {"model_dir": flags_values.model_dir} if flags_values.model_dir else {}


# Errors that mean "bad input, config or model directory", reported as one line:
# core.errors.RunError and core.guard.GuardError are RuntimeErrors.
USER_ERRORS = (ValueError, KeyError, RuntimeError)


def first_line(error) -> str:
    """The first line of an error (or message): gin appends its location on the next ones."""
    text = str(error).strip()
    if text:
        return text.splitlines()[0]
    return type(error).__name__ if isinstance(error, BaseException) else ""
