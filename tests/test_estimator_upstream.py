"""tensorflow/estimator's own Estimator tests, v2.15.0 (vendored: third_party/tensorflow_estimator/),
run against core.estimator.Estimator: the tests' `estimator.EstimatorV2` is the template's class,
and every evaluation that kept its graph runs again on the kept session and must return the same.

The file is upstream's, unchanged: this module loads it, gives it a copy of the estimator
module whose `EstimatorV2` is `RepeatingEstimator`, and lists its test classes for pytest,
leaving out what upstream itself skips under TensorFlow 2 (`test_util.run_v1_only`: the
export test class and 4 tests; third_party/tensorflow_estimator/README.md lists them).
"""

import importlib.util
import os
import tempfile
import types
import unittest

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework import test_util
from tensorflow_estimator.python.estimator import estimator as estimator_lib

from core.estimator import Estimator
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow

UPSTREAM = os.path.join(REPO_ROOT, "third_party", "tensorflow_estimator", "estimator_test.py")


class RepeatingEstimator(Estimator):
    """The template's Estimator, whose evaluations on a kept graph run twice: the second, on the
    kept session, must return what the first did (and is what the test sees)."""

    repeated = 0  # Evaluations run again on a kept session, over the module.

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "_actual_eval" not in vars(self):  # keep_eval_graph=False: stock's own.
            return
        evaluate = self._actual_eval

        def evaluate_twice(*args, **kwargs):
            first = evaluate(*args, **kwargs)
            if self._kept is None:  # The stock path: nothing kept to repeat on.
                return first
            session = self._kept.session
            second = evaluate(*args, **kwargs)
            assert self._kept is not None and self._kept.session is session, "the kept session was not reused"
            assert first.keys() == second.keys()
            for key in first:
                np.testing.assert_equal(second[key], first[key], err_msg=key)
            RepeatingEstimator.repeated += 1
            return second

        self._actual_eval = evaluate_twice


def _load_upstream():
    spec = importlib.util.spec_from_file_location("tensorflow_estimator_upstream_estimator_test", UPSTREAM)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    estimator = types.ModuleType(estimator_lib.__name__)
    estimator.__dict__.update(vars(estimator_lib))
    estimator.EstimatorV2 = RepeatingEstimator
    module.estimator = estimator  # What the tests call `estimator`.
    return module


_V1_ONLY_CODE = test_util.run_v1_only("a probe")(lambda self: None).__code__  # Every such wrapper's code.


def _v1_only(function):
    """Marked by upstream's `test_util.run_v1_only`: skipped under TensorFlow 2, as upstream runs it."""
    return getattr(function, "__code__", None) is _V1_ONLY_CODE


def _tests_that_run_under_tf2(module):
    """The module's TestCases, without what always skips under TensorFlow 2 (a class or test marked
    v1-only, and tf.test.TestCase's deprecated `test_session`, "Not a test")."""
    classes = {}
    for name, value in vars(module).items():
        if not (isinstance(value, type) and issubclass(value, tf.test.TestCase)) or _v1_only(value.setUp):
            continue
        for attribute, function in list(vars(value).items()):
            if attribute.startswith("test") and _v1_only(function):
                delattr(value, attribute)
        value.test_session = None  # Not collected (unittest collects callables only).
        classes[name] = value
    return classes


_upstream = _load_upstream()
globals().update(_tests_that_run_under_tf2(_upstream))


@pytest.fixture(scope="module", autouse=True)
def _temporary_dirs_under_pytest(tmp_path_factory):
    """Estimators made without a model_dir write under tempfile's folder: pytest's, here."""
    before = tempfile.tempdir
    tempfile.tempdir = str(tmp_path_factory.mktemp("upstream"))
    yield
    tempfile.tempdir = before


def test_an_upstream_evaluation_that_keeps_its_graph_runs_again_on_the_kept_session():
    """The runner does what it says: upstream's tf.data evaluation runs twice, and passes."""
    before, result = RepeatingEstimator.repeated, unittest.TestResult()
    _upstream.EstimatorDatasetIntegrationTest("test_batching").run(result)
    assert result.wasSuccessful(), result.failures + result.errors
    assert RepeatingEstimator.repeated == before + 1
