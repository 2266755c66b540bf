"""Segmentation metrics from the streaming confusion matrix equal scikit-learn's on the
whole set, whatever the batch size: partial last batch, ignored pixels, absent classes,
and two evaluations in a row."""

import numpy as np
import pytest
import tensorflow as tf
from sklearn import metrics as skm

from metrics import segmentation_metrics

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
    }


def _stream(labels, predictions, batch_size, evaluations=1):
    with tf.Graph().as_default():
        label_ph = tf.compat.v1.placeholder(tf.int32, [None, 6, 7])
        prediction_ph = tf.compat.v1.placeholder(tf.int32, [None, 6, 7])
        ops = segmentation_metrics(label_ph, prediction_ph, C, NAMES)
        values = {name: value for name, (value, _) in ops.items()}
        update = ops["mean_iou"][1]
        with tf.compat.v1.Session() as session:
            for _ in range(evaluations):  # What Estimator does at each evaluation.
                session.run(tf.compat.v1.local_variables_initializer())
                for start in range(0, len(labels), batch_size):
                    feed = {label_ph: labels[start : start + batch_size], prediction_ph: predictions[start : start + batch_size]}
                    session.run(update, feed)
                results = session.run(values)
    return results


@pytest.mark.parametrize("batch_size", [1, 7, 23])
def test_streaming_metrics_equal_sklearn_on_the_whole_set(batch_size):
    labels, predictions = _data()
    got = _stream(labels, predictions, batch_size, evaluations=2)
    want = _reference(labels, predictions)
    np.testing.assert_array_equal(got["confusion_matrix"], want["confusion_matrix"])
    for key in ("mean_iou", "median_iou", "frequency_weighted_iou", "mean_dice", "pixel_accuracy", "mean_class_accuracy"):
        np.testing.assert_allclose(got[key], want[key], rtol=1e-6, err_msg=key)
    for c, name in enumerate(NAMES):
        np.testing.assert_allclose(got[f"iou/{name}"], want["iou"][c], rtol=1e-6, err_msg=name)
        np.testing.assert_allclose(got[f"dice/{name}"], want["dice"][c], rtol=1e-6, err_msg=name)
    assert np.isnan(got["iou/never"]) and got["iou/d"] == 0.0


def test_label_outside_the_classes_is_rejected():
    labels, predictions = _data(n=2)
    labels[1, 2, 3] = 7
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"label outside \[0, 5\).*7"):
        _stream(labels, predictions, 2)
