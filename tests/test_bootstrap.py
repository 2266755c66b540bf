"""Bootstrap intervals and paired comparisons (`metrics/bootstrap.py`) and the per-example
sufficient statistics they rest on (`Task.statistics`, `Task.from_sums`)."""

import numpy as np
import pytest
import tensorflow as tf

from metrics import bootstrap
from metrics.segmentation import confusion_derived
from models.classification import Classification
from models.regression import Regression
from models.segmentation import Segmentation

NAMES = ["background", "thing", "rare"]


def _population(size, rng):
    """Per-example confusion counts [size, 9] of a 3-class segmentation: each example has some
    background, usually a "thing", rarely a "rare" object, and errors of varying rates."""
    stats = np.zeros((size, 3, 3))
    for i in range(size):
        truth = [rng.integers(200, 400), rng.integers(0, 120) * (rng.random() < 0.8), 0]
        truth[2] = rng.integers(10, 60) * (rng.random() < 0.15)
        for c, count in enumerate(truth):
            wrong = rng.binomial(count, rng.beta(2, 8 if c == 0 else 4))
            stats[i, c, c] = count - wrong
            others = [o for o in range(3) if o != c]
            split = rng.binomial(wrong, 0.5)
            stats[i, c, others[0]] += split
            stats[i, c, others[1]] += wrong - split
    return stats.reshape(size, 9)


def _from_sums(sums):
    return bootstrap.confusion_metrics(sums["confusion"].reshape(-1, 3, 3), NAMES)


def test_95_percent_intervals_cover_the_true_value_95_percent_of_the_time():
    """A population with a known mean IoU: samples of 300 examples drawn from it, each with its
    bootstrap interval; the share of intervals holding the population's value is the coverage."""
    rng = np.random.default_rng(7)
    population = _population(20_000, rng)
    truth = _from_sums({"confusion": population.sum(0, keepdims=True)})
    repetitions, covered = 400, {"mean_iou": 0, "iou/rare": 0}
    for _ in range(repetitions):
        sample = population[rng.integers(0, len(population), 300)]
        seed = int(rng.integers(1 << 30))
        found = bootstrap.intervals({"confusion": sample}, _from_sums, num_resamples=1000, seed=seed)
        for metric in covered:
            covered[metric] += found[metric]["low"] <= truth[metric][0] <= found[metric]["high"]
    for metric, count in covered.items():
        assert 0.93 <= count / repetitions <= 0.97, (metric, count / repetitions)


def test_a_narrow_sample_gives_a_narrow_interval_and_a_wide_one_wide():
    rng = np.random.default_rng(1)
    population = _population(4000, rng)
    widths = []
    for size in (50, 2000):
        found = bootstrap.intervals({"confusion": population[:size]}, _from_sums)["mean_iou"]
        widths.append(found["high"] - found["low"])
    assert widths[1] < widths[0] / 4  # About sqrt(40) narrower.


def test_paired_difference_of_an_evaluation_with_itself_is_exactly_zero():
    stats = {"confusion": _population(100, np.random.default_rng(2))}
    compared = bootstrap.paired_difference(stats, stats, _from_sums)
    assert all(v["difference"] == 0 and v["low"] == 0 and v["high"] == 0 for v in compared.values())


def test_pairing_sees_a_small_consistent_gain_that_unpaired_intervals_miss():
    """B fixes a few pixels of every example: a gain far smaller than the spread between
    examples. Unpaired, the two intervals overlap; paired, the difference is clearly > 0."""
    a = _population(200, np.random.default_rng(3)).reshape(-1, 3, 3)
    b = a.copy()
    fixed = np.minimum(a[:, 1, 0], 3)  # Three "thing" pixels called background, now right.
    b[:, 1, 0] -= fixed
    b[:, 1, 1] += fixed
    a, b = {"confusion": a.reshape(-1, 9)}, {"confusion": b.reshape(-1, 9)}
    alone = [bootstrap.intervals(s, _from_sums)["mean_iou"] for s in (a, b)]
    assert alone[1]["low"] < alone[0]["high"]  # Overlapping.
    paired = bootstrap.paired_difference(a, b, _from_sums)["mean_iou"]
    assert 0 < paired["low"] < paired["difference"] < paired["high"]


def test_resample_weights_draw_n_examples_each_and_do_not_depend_on_the_block_size(monkeypatch):
    whole = np.concatenate(list(bootstrap.resample_counts(37, 50, seed=5)))
    assert whole.shape == (50, 37) and (whole.sum(1) == 37).all()
    monkeypatch.setattr(bootstrap, "_CHUNK_CELLS", 37 * 7)  # Blocks of 7 resamples.
    assert np.array_equal(np.concatenate(list(bootstrap.resample_counts(37, 50, seed=5))), whole)


def _awkward_masks(rng, count=13, height=9, width=11):
    """Labels with ignored pixels and a class (2) in no label and in no prediction, and a
    class (3) predicted but never in a label."""
    labels = rng.integers(0, 2, (count, height, width))
    labels[rng.random(labels.shape) < 0.2] = 255
    labels[4] = 255  # One example wholly ignored.
    predictions = np.where(rng.random(labels.shape) < 0.7, np.where(labels == 255, 0, labels), 3)
    return labels.astype(np.int32), predictions.astype(np.int32)


@pytest.mark.parametrize("batch_size", [1, 7, 13])
def test_segmentation_statistics_sum_to_the_confusion_matrix_and_its_metrics(batch_size):
    rng = np.random.default_rng(11)
    labels, predictions = _awkward_masks(rng)
    task = Segmentation(4, ["a", "b", "absent", "never_true"])
    parts = []
    for start in range(0, len(labels), batch_size):  # The partial last batch included.
        batch = slice(start, start + batch_size)
        parts.append(task.statistics(tf.constant(labels[batch]), {"classes": tf.constant(predictions[batch])}, None))
    stats = np.concatenate([p["confusion"].numpy() for p in parts])
    valid = labels != 255
    reference = np.bincount(labels[valid] * 4 + predictions[valid], minlength=16).reshape(4, 4)
    assert np.array_equal(stats.sum(0).reshape(4, 4), reference)
    assert (stats[4] == 0).all()
    ours = task.from_sums(bootstrap.totals({"confusion": stats}))
    streaming = {key: value.numpy() for key, value in confusion_derived(tf.constant(reference)).items()}
    assert ours["mean_iou"][0] == pytest.approx(streaming["mean_iou"], abs=1e-12)
    for class_id, name in enumerate(task.class_names):
        np.testing.assert_allclose(ours[f"iou/{name}"][0], streaming["iou"][class_id], atol=1e-12)
    assert np.isnan(ours["iou/absent"][0]) and ours["iou/never_true"][0] == 0


def test_classification_and_regression_statistics_give_their_streaming_metrics():
    rng = np.random.default_rng(4)
    labels, classes = rng.integers(0, 3, 50), rng.integers(0, 3, 50)
    task = Classification(3, ["x", "y", "z"])
    stats = task.statistics(tf.constant(labels), {"classes": tf.constant(classes)}, None)["confusion"].numpy()
    got = task.from_sums(bootstrap.totals({"confusion": stats}))
    assert got["accuracy"][0] == pytest.approx(np.mean(labels == classes))
    assert got["recall/y"][0] == pytest.approx(np.mean(classes[labels == 1] == 1))
    assert got["precision/z"][0] == pytest.approx(np.mean(labels[classes == 2] == 2))

    targets, values = rng.normal(size=(40, 2)), rng.normal(size=(40, 2))
    task = Regression(2, ["u", "v"])
    stats = task.statistics(tf.constant(targets), {"predictions": tf.constant(values)}, None)["sums"].numpy()
    got = task.from_sums(bootstrap.totals({"sums": stats}))
    error = (values - targets).ravel()
    assert got["rmse"][0] == pytest.approx(np.sqrt(np.mean(error**2)))
    assert got["mae"][0] == pytest.approx(np.mean(np.abs(error)))
    assert got["r2"][0] == pytest.approx(1 - np.sum(error**2) / np.sum((targets - targets.mean()) ** 2))
