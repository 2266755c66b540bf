"""Registers the plain-Python builders with gin: gin stays at the edges.

Library code (`data/`, `models/`, `metrics/`, `hooks/`) has no gin in it; this
module is the one place that makes builders configurable, under the short names
the gin files use. Entry points and tools call the configured versions below,
after `core.runtime.parse_gin`.
"""

import gin

from core import evaluation, experiment
from data import input as data_input
from models import model_fn

make_input_fn = gin.external_configurable(data_input.make_input_fn, "make_input_fn")
build_model_fn = gin.external_configurable(model_fn.build_model_fn, "build_model_fn")

# The roots of train.py and evaluate.py.
train_and_evaluate = gin.external_configurable(experiment.train_and_evaluate, "train_and_evaluate")
evaluate = gin.external_configurable(evaluation.evaluate_main, "evaluate")


def macro(name: str):
    """The value of a gin macro, e.g. `macro("IMAGE_HEIGHT")`."""
    return gin.query_parameter(f"{name}/macro.value")
