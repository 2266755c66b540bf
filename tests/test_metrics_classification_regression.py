"""Classification and regression metrics equal scikit-learn / numpy on the whole set,
for batch sizes 1, 7 and all (partial last batches), with masked-out examples, absent
classes, ties in the scores, and two evaluations in a row."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from metrics import binary_classification_metrics, classification_metrics, regression_metrics
from tests.metric_harness import assert_close, stream

K = 5  # Class 4 never occurs and is never the top prediction.
BATCH_SIZES = [1, 7, 30]


def _multiclass(n=30, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n).astype(np.int32)
    logits = rng.normal(size=(n, K)) + 2.0 * np.eye(K)[labels]
    logits[:, 4] -= 10.0
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    probabilities = np.round(probabilities, 2).astype(np.float32)  # Ties in the scores.
    mask = rng.random(n) > 0.2
    return labels, probabilities, mask


def _precision_at_k(labels, probabilities, k):
    """numpy reference; ties go to the lower class index, as with argmax."""
    top = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return (top == labels[:, None]).sum(1).mean() / k


def _multiclass_reference(labels, probabilities, mask, beta):
    y, p = labels[mask], probabilities[mask]
    predicted = p.argmax(1)
    prf = skm.precision_recall_fscore_support(y, predicted, beta=beta, labels=range(K), zero_division=np.nan)
    auc = [skm.roc_auc_score(y == c, p[:, c]) if 0 < (y == c).sum() < len(y) else np.nan for c in range(K)]
    want = {
        "accuracy": skm.accuracy_score(y, predicted),
        "precision": np.nanmean(prf[0]),
        "recall": np.nanmean(prf[1]),
        f"f{beta:g}": np.nanmean(prf[2]),
        "roc_auc": np.nanmean(auc),
        "average_confidence": p.max(1).mean(),
        "precision_at_1": _precision_at_k(y, p, 1),
        "precision_at_3": _precision_at_k(y, p, 3),
    }
    for c in range(K):
        want[f"precision/{c}"], want[f"recall/{c}"], want[f"f{beta:g}/{c}"] = prf[0][c], prf[1][c], prf[2][c]
        want[f"roc_auc/{c}"] = auc[c]
    return want


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
@pytest.mark.parametrize("beta", [1.0, 0.5, 2.0])
def test_multiclass_equals_sklearn(batch_size, beta):
    labels, probabilities, mask = _multiclass()
    got = stream(
        lambda y, p, m: classification_metrics(y, p, K, beta=beta, top_k=(1, 3), mask=m),
        [labels, probabilities, mask],
        batch_size,
    )
    want = _multiclass_reference(labels, probabilities, mask, beta)
    assert set(want) <= set(got)
    for key, value in want.items():
        assert_close(got[key], value, key)
    assert np.isnan(got["precision/4"]) and np.isnan(got["roc_auc/4"])  # Absent: undefined, not 0.
    # Without ties, top-k agrees with scikit-learn's own top_k_accuracy_score.
    assert _precision_at_k(labels, probabilities + 1e-6 * np.arange(K)[::-1], 3) == pytest.approx(
        skm.top_k_accuracy_score(labels, probabilities + 1e-6 * np.arange(K)[::-1], k=3, labels=range(K)) / 3
    )


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_binary_equals_sklearn(batch_size):
    rng = np.random.default_rng(1)
    labels = (rng.random(30) < 0.4).astype(np.int32)
    probabilities = np.round(np.clip(0.3 * labels + rng.random(30) * 0.7, 0, 1), 1).astype(np.float32)
    mask = rng.random(30) > 0.1
    got = stream(
        lambda y, p, m: binary_classification_metrics(y, p, threshold=0.5, beta=2.0, mask=m),
        [labels, probabilities, mask],
        batch_size,
    )
    y, p = labels[mask], probabilities[mask]
    predicted = p >= 0.5
    want = {
        "accuracy": skm.accuracy_score(y, predicted),
        "precision": skm.precision_score(y, predicted),
        "recall": skm.recall_score(y, predicted),
        "f2": skm.fbeta_score(y, predicted, beta=2.0),
        "roc_auc": skm.roc_auc_score(y, p),
        "average_confidence": np.maximum(p, 1 - p).mean(),
    }
    for key, value in want.items():
        assert_close(got[key], value, key)


def _regression_reference(labels, predictions, mask):
    y, p = labels[mask].astype(np.float64), predictions[mask].astype(np.float64)
    nonzero = y != 0
    return {
        "rmse": np.sqrt(skm.mean_squared_error(y, p)),
        "mae": skm.mean_absolute_error(y, p),
        # On the nonzero labels sklearn's epsilon never applies: this is the plain definition.
        "mape": skm.mean_absolute_percentage_error(y[nonzero], p[nonzero]),
        "r2": skm.r2_score(y, p),
        "mape_zero_labels": float((~nonzero).sum()),
    }


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_regression_equals_sklearn_with_negative_and_zero_labels(batch_size):
    rng = np.random.default_rng(2)
    labels = rng.normal(0, 3, (30, 2)).astype(np.float32)
    labels[::5, 0] = 0.0  # MAPE is undefined there: left out, and counted.
    predictions = (labels + rng.normal(0, 1, labels.shape)).astype(np.float32)
    mask = rng.random(labels.shape) > 0.15
    got = stream(lambda y, p, m: regression_metrics(y, p, mask=m), [labels, predictions, mask], batch_size)
    want = _regression_reference(labels, predictions, mask)
    assert want["mape_zero_labels"] > 0
    for key, value in want.items():
        assert_close(got[key], value, key)


def test_r2_stays_accurate_with_a_large_offset():
    """A naive sum(y^2) - n*mean^2 loses every digit here; merged variances do not."""
    rng = np.random.default_rng(3)
    labels = (1e8 + rng.normal(0, 1, 40)).astype(np.float64)
    predictions = labels + rng.normal(0, 0.5, 40)
    got = stream(lambda y, p: regression_metrics(y, p), [labels, predictions], 7)
    assert_close(got["r2"], skm.r2_score(labels, predictions), "r2")


def test_r2_of_constant_labels_is_undefined():
    labels = np.full(6, 2.0, np.float32)
    got = stream(lambda y, p: regression_metrics(y, p), [labels, labels + 1], 4)
    assert np.isnan(got["r2"]) and got["rmse"] == pytest.approx(1.0)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 40),
    batch_size=st.integers(1, 12),
    seed=st.integers(0, 2**16),
)
def test_property_multiclass_any_size_and_batching(n, batch_size, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n).astype(np.int32)
    probabilities = rng.dirichlet(np.ones(3), n).astype(np.float32)
    got = stream(
        lambda y, p: classification_metrics(y, p, 3, top_k=(2,)), [labels, probabilities], batch_size, evaluations=1
    )
    predicted = probabilities.argmax(1)
    prf = skm.precision_recall_fscore_support(labels, predicted, labels=range(3), zero_division=np.nan)
    assert_close(got["accuracy"], skm.accuracy_score(labels, predicted), "accuracy")
    assert_close(got["f1"], np.nanmean(prf[2]), "f1")
    assert_close(
        got["precision_at_2"], skm.top_k_accuracy_score(labels, probabilities, k=2, labels=range(3)) / 2, "p@2"
    )
