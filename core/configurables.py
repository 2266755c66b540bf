"""The one place that registers the plain-Python builders with gin, and parses gin strictly.

Library code (`data/`, `models/`, `metrics/`, `hooks/`) has no gin in it; this
module makes builders configurable under the short names the gin files use
(`@unet()`, `@segmentation()`, `@flip_left_right()`, `@per_class_logging()`...).
Entry points call the configured roots below after `parse_gin`.

A fork registers its own network, task, augmentation or hook here, or in its own
module loaded from a gin file with `import my_module` (see docs/fork.md).
"""

import os
import sys

import gin
import gin.tf  # noqa: F401  Registers TensorFlow's file reader and GinConfigSaverHook.

from common import determinism
from common.errors import ConfigError, first_line
from common.runtime import REPO_ROOT
from core import best, cluster, evaluation, experiment, warm_start
from data import augment, preprocess
from data import input as data_input
from hooks import eval_logging
from metrics import slices
from models import classification, deeplab, mobilenet, model_fn, regression, segmentation, unet

# Builders.
make_input_fn = gin.external_configurable(data_input.make_input_fn, "make_input_fn")
build_model_fn = gin.external_configurable(model_fn.build_model_fn, "build_model_fn")

# Networks: `NETWORK = @unet()` (or @deeplab(), @mobilenet_v2()).
gin.external_configurable(unet.UNet, "unet")
gin.external_configurable(deeplab.DeepLab, "deeplab")
gin.external_configurable(mobilenet.MobileNetV2Encoder, "mobilenet_v2")

# Tasks: `TASK = @segmentation()`.
gin.external_configurable(segmentation.Segmentation, "segmentation")
gin.external_configurable(classification.Classification, "classification")
gin.external_configurable(regression.Regression, "regression")

# Augmentations: `train/make_input_fn.augmentations = [@flip_left_right(), ...]`.
gin.external_configurable(augment.FlipLeftRight, "flip_left_right")
gin.external_configurable(augment.FlipUpDown, "flip_up_down")
gin.external_configurable(augment.Brightness, "brightness")

# Training preprocessing of images of any size: `train/make_input_fn.preprocess = @scale_and_crop()`.
gin.external_configurable(preprocess.ScaleAndCrop, "scale_and_crop")

# Evaluation hook builders: `EVAL_HOOKS = [@per_class_logging()]`.
gin.external_configurable(eval_logging.per_class_logging, "per_class_logging")

# The root's groups of related settings (configs/base.gin binds each by topic).
gin.external_configurable(best.BestCheckpoint, "best_checkpoint")
gin.external_configurable(warm_start.WarmStart, "warm_start")
gin.external_configurable(evaluation.Export, "export")
slicing = gin.external_configurable(slices.Slicing, "slicing")

# When a checkpoint replaces the best: `BEST_RULE = @better_by_margin()`.
gin.external_configurable(best.BetterByMargin, "better_by_margin")
gin.external_configurable(best.SignificantlyBetter, "significantly_better")

# Synchronous training (docs/distributed.md): `STRATEGY = @multi_worker_mirrored()`.
gin.external_configurable(cluster.MultiWorkerMirrored, "multi_worker_mirrored")
gin.external_configurable(cluster.Mirrored, "mirrored")

# Op determinism (common/determinism.py): `DETERMINISTIC = True`.
op_determinism = gin.external_configurable(determinism.configure, "op_determinism")

# The roots of train.py and evaluate.py.
train_and_evaluate = gin.external_configurable(experiment.train_and_evaluate, "train_and_evaluate")
evaluate = gin.external_configurable(evaluation.evaluate, "evaluate")


def macro(name: str):
    """The value of a gin macro, e.g. `macro("IMAGE_HEIGHT")`."""
    return gin.query_parameter(f"{name}/macro.value")


def _required_macros() -> list:
    """Macros still bound to %gin.REQUIRED after parsing (gin has no public listing)."""
    return sorted(
        scope
        for (scope, selector), values in gin.config._CONFIG.items()
        if selector == "gin.macro" and repr(values.get("value")) == "%gin.REQUIRED"
    )


def parse_gin(gin_files=(), gin_params=()):
    """Parses gin files and bindings strictly: a mistake fails here, before any graph.

    Includes resolve relative to the repository root, so `include 'configs/base.gin'`
    works from any directory; the files named on the command line are relative to
    the caller's directory. `import my_module` in a gin file loads a fork's own
    module: one beside the gin file, in the working directory, or on PYTHONPATH.

    Raises:
      ConfigError: one line naming the unknown configurable or parameter, the
        syntax error, the module that cannot be imported, or the dataset macros
        still `%gin.REQUIRED`.
    """
    gin.add_config_file_search_path(REPO_ROOT)
    gin_files = [os.path.abspath(path) for path in gin_files]
    missing = [path for path in gin_files if not os.path.exists(path)]
    if missing:
        raise ConfigError(f"gin: no such file {missing[0]}")
    caller_dir = os.getcwd()
    # `import my_module` in a gin file finds a module beside that file or in the
    # working directory (after everything already on the path).
    for directory in [caller_dir] + [os.path.dirname(path) for path in gin_files]:
        if directory not in sys.path:
            sys.path.append(directory)
    # gin's resource lookup trips on a `configs` folder in the working directory, so
    # parse from the repository root; the caller's directory stays importable.
    os.chdir(REPO_ROOT)
    try:
        gin.parse_config_files_and_bindings(gin_files, list(gin_params), skip_unknown=False, finalize_config=False)
    except Exception as error:  # noqa: BLE001  Sorted into config mistakes and bugs just below.
        if not _is_config_error(error):
            raise
        raise ConfigError(f"gin: {first_line(error)}") from None
    finally:
        os.chdir(caller_dir)
    unset = _required_macros()
    if unset:
        raise ConfigError(
            f"gin: macro(s) {', '.join(unset)} not set (%gin.REQUIRED); a dataset gin file sets them "
            "(see configs/synthetic.gin)"
        )
    gin.finalize()


def _is_config_error(error) -> bool:
    """Whether an exception out of gin's parser is the config's fault (vs a bug)."""
    import tokenize

    return isinstance(error, (ValueError, SyntaxError, ImportError, OSError, tokenize.TokenError))
