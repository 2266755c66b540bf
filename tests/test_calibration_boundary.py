"""Expected calibration error and Boundary IoU, streamed as Estimator streams them, against
numpy references written from their definitions, on awkward data, for batch sizes 1, 7
and all."""

import numpy as np
import pytest

from metrics.boundary import boundary_iou, boundary_width
from metrics.calibration import calibration_metrics
from tests.metric_harness import assert_close, stream

IGNORE = 255


def ece_reference(confidence, correct, valid, num_bins=15):
    """Guo et al. (2017), eq. 3: sum_b |B_b|/n |acc(B_b) - conf(B_b)|, bins [b/B, (b+1)/B), 1.0 in the last."""
    confidence, correct = confidence[valid], correct[valid].astype(float)
    total, n = 0.0, len(confidence)
    for b in range(num_bins):
        upper = confidence < (b + 1) / num_bins if b < num_bins - 1 else confidence <= 1.0
        members = (confidence >= b / num_bins) & upper
        if members.any():
            total += members.sum() / n * abs(correct[members].mean() - confidence[members].mean())
    return total


def _calibration_data(rng, count=13, size=6):
    confidence = rng.random((count, size, size))
    confidence[0, 0, :3] = [0.0, 1.0, 1.0 / 15 * 4]  # Both ends and a bin edge.
    confidence[1] = 0.97  # Crowds one bin; several bins stay empty overall.
    correct = rng.random((count, size, size)) < confidence**0.5  # Underconfident.
    labels = rng.integers(0, 3, (count, size, size))
    labels[rng.random(labels.shape) < 0.2] = IGNORE
    return confidence, correct, labels


@pytest.mark.parametrize("batch_size", [1, 7, 13])
def test_ece_equals_its_reference_with_ignored_pixels_and_empty_bins(batch_size):
    confidence, correct, labels = _calibration_data(np.random.default_rng(0))

    def build(confidence, correct, labels):
        return calibration_metrics(confidence, correct, mask=labels < IGNORE)

    got = stream(build, [confidence, correct, labels], batch_size)
    assert_close(got["ece"], ece_reference(confidence, correct, labels < IGNORE), "ece", rtol=1e-9)
    assert isinstance(got["summary/reliability"], bytes) and got["summary/reliability"]


def test_a_calibrated_predictor_has_ece_near_zero_and_an_overconfident_one_does_not():
    rng = np.random.default_rng(1)
    confidence = rng.random((50, 20, 20))
    calibrated = rng.random(confidence.shape) < confidence
    valid = np.ones(confidence.shape, bool)
    assert ece_reference(confidence, calibrated, valid) < 0.02  # Sampling noise only: about 0.01.
    got = stream(lambda c, k: calibration_metrics(c, k), [confidence, calibrated], 50)
    assert got["ece"] < 0.02
    always_wrong = np.zeros(confidence.shape, bool)
    got = stream(lambda c, k: calibration_metrics(c, k), [confidence, always_wrong], 50)
    assert_close(got["ece"], confidence.mean(), "ece", rtol=1e-9)


def inner_boundary_reference(mask, d):
    """The pixels of `mask` with a pixel outside the mask, or outside the image, within
    chessboard distance d: the paper's G_d & G, one offset of the window at a time."""
    height, width = mask.shape
    padded = np.zeros((height + 2 * d, width + 2 * d), bool)  # Outside the image: not the mask.
    padded[d : d + height, d : d + width] = mask
    outside_near = np.zeros_like(mask)
    for dy in range(-d, d + 1):
        for dx in range(-d, d + 1):
            outside_near |= ~padded[d + dy : d + dy + height, d + dx : d + dx + width]
    return mask & outside_near


def boundary_iou_reference(labels, predictions, num_classes, d):
    """Per class, intersections and unions of the inner boundary regions summed over the
    images (ignored pixels in neither mask), then divided; the mean over defined classes."""
    intersection, union = np.zeros(num_classes), np.zeros(num_classes)
    for label, prediction in zip(labels, predictions):
        valid = label != IGNORE
        for c in range(num_classes):
            truth = inner_boundary_reference(label == c, d)
            predicted = inner_boundary_reference((prediction == c) & valid, d)
            intersection[c] += (truth & predicted).sum()
            union[c] += (truth | predicted).sum()
    with np.errstate(invalid="ignore"):
        per_class = np.where(union > 0, intersection / np.where(union > 0, union, 1), np.nan)
    return np.nanmean(per_class), per_class


def _masks(rng, count=9, height=50, width=60):
    """Awkward masks: thin objects (1-pixel lines), objects touching the image border, ignored
    bands on object edges, a class (3) never present, and predictions shifted and eroded."""
    labels = np.zeros((count, height, width), np.int32)
    for i in range(count):
        top, left = rng.integers(0, height - 15), rng.integers(0, width - 20)
        labels[i, top : top + rng.integers(5, 15), left : left + rng.integers(5, 20)] = 1
        labels[i, rng.integers(0, height), :] = 2  # A one-pixel-thin line across, to both borders.
        labels[i, :4, :] = np.where(rng.random(width) < 0.5, 1, labels[i, :4, :])  # Ragged, at the top border.
    edges = (np.abs(np.diff(labels, axis=1, prepend=labels[:, :1])) > 0) & (rng.random(labels.shape) < 0.5)
    labels[edges] = IGNORE
    predictions = np.roll(np.where(labels == IGNORE, 0, labels), 1, axis=2)
    predictions[:, ::7, ::5] = 1
    return labels, predictions.astype(np.int32)


@pytest.mark.parametrize(
    "batch_size, height, width, d",
    [(1, 50, 60, 2), (7, 50, 60, 2), (9, 50, 60, 2), (4, 20, 24, 1), (9, 130, 120, 4)],
)
def test_boundary_iou_equals_its_reference_on_awkward_masks(batch_size, height, width, d):
    labels, predictions = _masks(np.random.default_rng(2), height=height, width=width)
    assert boundary_width(height, width) == d  # 0.02 x the diagonal, rounded, at least 1.
    want_mean, want = boundary_iou_reference(labels, predictions, 4, d)
    got = stream(lambda y, p: boundary_iou(y, p, 4, ["bg", "box", "line", "absent"]), [labels, predictions], batch_size)
    assert_close(got["boundary_iou"], want_mean, "boundary_iou", rtol=1e-12)
    for c, name in enumerate(["bg", "box", "line", "absent"]):
        assert_close(got[f"boundary_iou/{name}"], want[c], name, rtol=1e-12)
    assert np.isnan(got["boundary_iou/absent"])


def test_boundary_iou_sees_an_edge_error_that_mask_iou_hides():
    """A 40x40 square predicted one pixel too small all round: mask IoU 0.9, Boundary IoU far lower."""
    labels = np.zeros((1, 64, 64), np.int32)
    labels[0, 12:52, 12:52] = 1
    predictions = np.zeros_like(labels)
    predictions[0, 13:51, 13:51] = 1
    got = stream(lambda y, p: boundary_iou(y, p, 2), [labels, predictions], 1)
    mask_iou = 38 * 38 / (40 * 40)
    assert mask_iou > 0.9 and got["boundary_iou/1"] < 0.7


def test_a_prediction_right_on_every_counted_pixel_scores_one_despite_an_ignored_band():
    labels = np.zeros((1, 32, 32), np.int32)
    labels[0, 8:24, 8:24] = 1
    labels[0, 7, 7:25] = labels[0, 24, 7:25] = labels[0, 7:25, 7] = labels[0, 7:25, 24] = IGNORE
    predictions = np.zeros_like(labels)
    predictions[0, 7:25, 7:25] = 1  # The band predicted as the object: ignored either way.
    got = stream(lambda y, p: boundary_iou(y, p, 2), [labels, predictions], 1)
    assert got["boundary_iou/0"] == 1.0 and got["boundary_iou/1"] == 1.0


def test_lower_ece_is_better_for_the_best_checkpoint():
    from models.classification import Classification
    from models.segmentation import Segmentation

    for task in (Segmentation(3, ["a", "b", "c"]), Classification(3, ["a", "b", "c"])):
        assert task.higher_is_better("ece") is False and task.higher_is_better(task.headline) is True
