"""Segmentation metrics from the streaming confusion matrix equal scikit-learn's on the
whole set, whatever the batch size (1, 7, all 23: partial last batches), with ignored
pixels, an absent class, a class never predicted, and two evaluations in a row."""

import numpy as np
import pytest
import tensorflow as tf
from sklearn import metrics as skm

from metrics import segmentation_metrics
from metrics.segmentation import SUMMARY_KEYS
from tests.metric_harness import assert_close, stream

C = 5  # Class 4 never appears in labels or predictions: its IoU is undefined.
NAMES = ["a", "b", "c", "d", "never"]


def _data(n=23, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, (n, 6, 7)).astype(np.int32)
    predictions = np.where(rng.random(labels.shape) < 0.6, labels, rng.integers(0, 4, labels.shape)).astype(np.int32)
    predictions[predictions == 3] = 2  # Class 3 is never predicted: IoU 0, but defined.
    labels[rng.random(labels.shape) < 0.15] = 255
    return labels, predictions


def _reference(labels, predictions):
    valid = labels != 255
    y, p = labels[valid], predictions[valid]
    support = np.array([(y == c).sum() for c in range(C)])
    present = np.array([support[c] + (p == c).sum() > 0 for c in range(C)])
    # The documented convention: a class absent from both is undefined (NaN), not 0.
    iou = np.where(present, skm.jaccard_score(y, p, labels=range(C), average=None, zero_division=0), np.nan)
    dice = np.where(present, skm.f1_score(y, p, labels=range(C), average=None, zero_division=0), np.nan)
    recall = np.where(support > 0, skm.recall_score(y, p, labels=range(C), average=None, zero_division=0), np.nan)
    return {
        "confusion_matrix": skm.confusion_matrix(y, p, labels=range(C)),
        "iou": iou,
        "dice": dice,
        "mean_iou": np.nanmean(iou),
        "median_iou": np.median(iou[present]),
        "frequency_weighted_iou": (support[present] * iou[present]).sum() / support[present].sum(),
        "mean_dice": np.nanmean(dice),
        "pixel_accuracy": skm.accuracy_score(y, p),
        "mean_class_accuracy": np.nanmean(recall),
        # Foreground (any class but 0) against background, as a binary problem.
        "foreground_f1": skm.f1_score(y != 0, p != 0),
    }


def _stream(labels, predictions, batch_size, evaluations=2):
    return stream(lambda y, p: segmentation_metrics(y, p, C, NAMES), [labels, predictions], batch_size, evaluations)


@pytest.mark.parametrize("batch_size", [1, 7, 23])
def test_streaming_metrics_equal_sklearn_on_the_whole_set(batch_size):
    labels, predictions = _data()
    got = _stream(labels, predictions, batch_size)
    want = _reference(labels, predictions)
    np.testing.assert_array_equal(got["confusion_matrix"], want["confusion_matrix"])
    for key in SUMMARY_KEYS + ("foreground_f1",):
        assert_close(got[key], want[key], key)
    for c, name in enumerate(NAMES):
        assert_close(got[f"iou/{name}"], want["iou"][c], f"iou/{name}")
        assert_close(got[f"dice/{name}"], want["dice"][c], f"dice/{name}")
    assert np.isnan(got["iou/never"]) and got["iou/d"] == 0.0


@pytest.mark.parametrize(
    "where, value, message",
    [
        ("label", 7, r"label outside \[0, 5\) and not the ignore label 255.*\[7\]"),
        ("label", 300, r"label outside \[0, 256\) \(negative or too large\), entries not counted:\] \[1\]"),
        ("label", -3, r"non-negative"),
        ("prediction", 5, r"prediction outside \[0, 5\), largest \(as unsigned\):\] \[5\]"),
        ("prediction", -1, r"prediction outside \[0, 5\), largest \(as unsigned\):\] \[4294967295\]"),
    ],
)
def test_out_of_range_values_are_rejected_not_counted(where, value, message):
    labels, predictions = _data(n=3)
    (labels if where == "label" else predictions)[1, 2, 3] = value
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        _stream(labels, predictions, 2)


def test_the_data_tells_a_batch_average_from_the_exact_value():
    """Negative control: averaging per-batch mean IoU (the usual recipe) is off here,
    so the tests above would catch a metric that did that."""
    labels, predictions = _data()
    exact = _reference(labels, predictions)["mean_iou"]
    per_batch = [_reference(labels[i : i + 7], predictions[i : i + 7])["mean_iou"] for i in range(0, len(labels), 7)]
    assert abs(np.mean(per_batch) - exact) > 1e-3


def test_an_evaluation_with_every_pixel_ignored_reports_nan_not_a_crash():
    labels, predictions = _data(n=3)
    labels[:] = 255
    got = _stream(labels, predictions, 2)
    assert np.isnan(got["mean_iou"]) and np.isnan(got["median_iou"]) and np.isnan(got["pixel_accuracy"])
    assert got["confusion_matrix"].sum() == 0


def test_an_ignore_label_inside_the_classes_is_refused():
    with tf.Graph().as_default(), pytest.raises(ValueError, match="ignore_label must be None or >= num_classes"):
        segmentation_metrics(tf.zeros([1, 2, 2], tf.int32), tf.zeros([1, 2, 2], tf.int32), 3, ignore_label=0)
