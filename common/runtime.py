"""Process setup shared by the entry points: quiet logs, determinism, the shared flags."""

import logging
import os
import sys
import warnings

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def hide_native_logs():
    """Hides TensorFlow's C++ start-up chatter (cuDNN/cuFFT factory "errors" on CPU-only
    hosts). Effective only before TensorFlow loads, so entry points call it first; real
    failures still raise Python exceptions. A TF_CPP_MIN_LOG_LEVEL already set is kept."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def quiet(verbose: bool = False):
    """Hides TensorFlow's and Estimator's deprecation warnings and INFO logs, and, called before
    TensorFlow loads, its C++ logs too (`hide_native_logs`: this process's children inherit it)."""
    if not verbose and "tensorflow" not in sys.modules:
        hide_native_logs()
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
        # Under a distribution strategy tf.data warns on every input pipeline it builds.
        warnings.filterwarnings("ignore", message="To make it possible to preserve tf.data options")


def define_flags(gin_required: bool = True):
    """The flags the gin-driven entry points share: --gin_file, --gin_param, --model_dir, --verbose."""
    from absl import flags

    flags.DEFINE_multi_string("gin_file", None, "Gin config file(s), applied in order.")
    flags.DEFINE_multi_string("gin_param", None, "Gin bindings, e.g. 'TRAIN_STEPS = 100'; applied after the files.")
    flags.DEFINE_string("model_dir", None, "Model directory; overrides the config's MODEL_DIR.")
    flags.DEFINE_bool("verbose", False, "Show TensorFlow's INFO logs and deprecation warnings.")
    if gin_required:
        flags.mark_flag_as_required("gin_file")
