"""Every gin file parses strictly; a dataset file missing a macro is named clearly."""

import glob
import os
import re

import gin
import pytest

from common.errors import ConfigError
from core import configurables
from tests.conftest import REPO_ROOT

CONFIGS = sorted(glob.glob(os.path.join(REPO_ROOT, "configs", "*.gin")))


@pytest.fixture(autouse=True)
def _clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


@pytest.mark.parametrize("path", [p for p in CONFIGS if not p.endswith("base.gin")], ids=os.path.basename)
def test_config_parses(path):
    configurables.parse_gin([path])
    assert gin.query_parameter("train_and_evaluate.train_steps") is not None
    class_names = gin.query_parameter("CLASS_NAMES/macro.value")
    assert len(class_names) == gin.query_parameter("NUM_CLASSES/macro.value")


@pytest.mark.parametrize("path", [p for p in CONFIGS if not p.endswith("base.gin")], ids=os.path.basename)
def test_config_header_states_command_time_and_metric(path):
    configurables.parse_gin([path])
    task = gin.query_parameter("TASK/macro.value").selector
    metric = {"segmentation": "mean IoU", "classification": "accuracy", "regression": "R^2"}[task]
    header = open(path).read().split("include")[0]
    assert "train.py" in header or "make train" in header, path
    assert "minute" in header and re.search(re.escape(metric) + r" \d\.\d+", header), (path, metric)
    assert "TBD" not in header


def test_missing_dataset_macro_is_named(tmp_path):
    config = tmp_path / "partial.gin"
    config.write_text("include 'configs/base.gin'\nTRAIN_FILES = 'x'\nVAL_FILES = 'y'\nNUM_CLASSES = 2\n")
    with pytest.raises(ConfigError, match="CLASS_NAMES, IMAGE_HEIGHT, IMAGE_WIDTH not set"):
        configurables.parse_gin([str(config)])


def test_typo_in_binding_fails():
    with pytest.raises(ConfigError, match="learning_rat"):
        configurables.parse_gin(
            [os.path.join(REPO_ROOT, "configs", "synthetic.gin")], ["build_model_fn.learning_rat = 1.0"]
        )
