"""Confidence intervals and paired comparisons from per-example sufficient statistics.

An evaluation's dataset-level metrics are functions of sums over its examples (for
segmentation, the confusion matrix is the sum of each example's confusion counts). So
each evaluation keeps every example's share of those sums (`statistics-<step>.npz`
beside `results.jsonl`), and any resample of the examples gives its metrics from a
weighted sum: no second pass over the data, no model.

- `intervals`: the bootstrap (Efron & Tibshirani, 1993): resample the N examples with
  replacement `num_resamples` times (seeded), recompute each metric from the resampled
  sums, and take the BCa interval of those values (ch. 14: the percentiles, moved to
  correct for the statistic's bias and skew, which ratios such as IoU have).
- `paired_difference`: the same resamples applied to two evaluations of the same
  examples (B - A per resample), so what both got right or wrong cancels out: the
  interval is that of the difference, far narrower than two unpaired intervals suggest.

The metric functions (`from_sums`) are numpy and vectorised over resamples: each takes
`{name: float64 [R, k]}` (the resampled sums) and returns `{metric: float64 [R]}`.
"""

from statistics import NormalDist

import numpy as np

NUM_RESAMPLES = 1000
LEVEL = 0.95
SEED = 0
_CHUNK_CELLS = 4_000_000  # Resample weights held at once (R x N), about 16 MB of int32.


def resample_counts(num_examples: int, num_resamples: int = NUM_RESAMPLES, seed: int = SEED):
    """Yields int32 [r, N] blocks of resample weights, `num_resamples` rows in all: row j
    counts how often each example is drawn in resample j (N draws with replacement)."""
    rng = np.random.default_rng(seed)
    per_block = max(1, _CHUNK_CELLS // max(num_examples, 1))
    done = 0
    while done < num_resamples:
        rows = min(per_block, num_resamples - done)
        draws = rng.integers(0, num_examples, size=(rows, num_examples))
        flat = (draws + num_examples * np.arange(rows)[:, None]).ravel()
        yield np.bincount(flat, minlength=rows * num_examples).reshape(rows, num_examples).astype(np.int32)
        done += rows


def resampled_metrics(statistics: dict, from_sums, num_resamples=NUM_RESAMPLES, seed=SEED, others=()):
    """Each metric over `num_resamples` resamples of the examples.

    Args:
      statistics: `{name: [N, k]}` per-example sufficient statistics.
      from_sums: `{name: [R, k]} -> {metric: [R]}`.
      others: further statistics dicts over the same N examples, resampled with the
        same draws (a paired comparison).

    Returns:
      one `{metric: float64 [num_resamples]}` per statistics dict (`statistics` first).
    """
    sets = [statistics, *others]
    num_examples = len(next(iter(statistics.values())))
    results = [{} for _ in sets]
    for counts in resample_counts(num_examples, num_resamples, seed):
        weights = counts.astype(np.float64)
        for out, stats in zip(results, sets):
            sums = {name: weights @ np.asarray(values, np.float64) for name, values in stats.items()}
            for metric, values in from_sums(sums).items():
                out.setdefault(metric, []).append(np.asarray(values, np.float64))
    return [{metric: np.concatenate(parts) for metric, parts in out.items()} for out in results]


def percentile_interval(values, level: float = LEVEL):
    """`(low, high)`: the central `level` of the finite values; `(None, None)` if fewer than
    half of them are finite (a metric undefined in most resamples has no interval)."""
    values = np.asarray(values, np.float64)
    finite = values[np.isfinite(values)]
    if finite.size < max(1, values.size // 2):
        return None, None
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def bca_interval(resampled, estimate, jackknife, level: float = LEVEL):
    """`(low, high)`: the bias-corrected and accelerated interval (Efron, 1987; Efron &
    Tibshirani, 1993, ch. 14) from the resampled values, the whole set's estimate and the
    leave-one-out (jackknife) values; `(None, None)` where undefined. It corrects the
    percentile interval for a statistic that is biased or skewed, as ratios of counts
    (IoU) are on few examples."""
    resampled, jackknife = np.asarray(resampled, np.float64), np.asarray(jackknife, np.float64)
    finite = resampled[np.isfinite(resampled)]
    if not np.isfinite(estimate) or finite.size < max(1, resampled.size // 2):
        return None, None
    below = (np.sum(finite < estimate) + 0.5 * np.sum(finite == estimate)) / finite.size
    if below in (0.0, 1.0):  # Every resample on one side (a constant): no correction to make.
        return percentile_interval(finite, level)
    normal = NormalDist()
    bias = normal.inv_cdf(below)
    jackknife = jackknife[np.isfinite(jackknife)]  # None finite (one example): no acceleration.
    spread = jackknife.mean() - jackknife if jackknife.size else jackknife
    denominator = 6.0 * np.sum(spread**2) ** 1.5
    acceleration = np.sum(spread**3) / denominator if denominator > 0 else 0.0
    quantiles = []
    for tail in ((1 - level) / 2, (1 + level) / 2):
        z = bias + normal.inv_cdf(tail)
        quantiles.append(100 * normal.cdf(bias + z / (1 - acceleration * z)))
    low, high = np.percentile(finite, quantiles)
    return float(low), float(high)


def jackknife_metrics(statistics: dict, from_sums) -> dict:
    """`{metric: [N]}`: each metric with one example left out (the whole sums minus its share)."""
    whole = totals(statistics)
    return from_sums({name: whole[name] - np.asarray(values, np.float64) for name, values in statistics.items()})


def totals(statistics: dict) -> dict:
    """The whole evaluation's sums, shaped as one resample: `{name: [1, k]}`."""
    return {name: np.asarray(values, np.float64).sum(0, keepdims=True) for name, values in statistics.items()}


def intervals(statistics: dict, from_sums, level=LEVEL, num_resamples=NUM_RESAMPLES, seed=SEED) -> dict:
    """`{metric: {"low", "high"}}`: the BCa bootstrap interval of every metric defined on
    the whole set."""
    (resampled,) = resampled_metrics(statistics, from_sums, num_resamples, seed)
    estimates, jackknife = from_sums(totals(statistics)), jackknife_metrics(statistics, from_sums)
    out = {}
    for metric, values in resampled.items():
        low, high = bca_interval(values, estimates[metric][0], jackknife[metric], level)
        if low is not None:
            out[metric] = {"low": low, "high": high}
    return out


def paired_difference(a: dict, b: dict, from_sums, level=LEVEL, num_resamples=NUM_RESAMPLES, seed=SEED) -> dict:
    """`{metric: {"a", "b", "difference", "low", "high"}}`: B - A on the whole set and the
    percentile interval of B - A over paired resamples (the same draws for both)."""
    whole_a, whole_b = from_sums(totals(a)), from_sums(totals(b))
    resampled_a, resampled_b = resampled_metrics(a, from_sums, num_resamples, seed, others=[b])
    out = {}
    for metric in whole_a:
        value_a, value_b = float(whole_a[metric][0]), float(whole_b[metric][0])
        low, high = percentile_interval(resampled_b[metric] - resampled_a[metric], level)
        out[metric] = {"a": value_a, "b": value_b, "difference": value_b - value_a, "low": low, "high": high}
    return out


def _divide(numerator, denominator):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan)


def _nanmean(values, axis=-1):
    finite = np.isfinite(values)
    return _divide(np.where(finite, values, 0).sum(axis), finite.sum(axis).astype(np.float64))


def iou_and_dice(confusion):
    """numpy: per-class IoU and Dice from confusion matrices `[..., C, C]` (rows = ground
    truth), NaN for a class absent from both: `metrics.confusion.iou_and_dice`'s twin."""
    confusion = np.asarray(confusion, np.float64)
    true_positive = np.diagonal(confusion, axis1=-2, axis2=-1)
    ground_truth, predicted = confusion.sum(-1), confusion.sum(-2)
    iou = _divide(true_positive, ground_truth + predicted - true_positive)
    return iou, _divide(2 * true_positive, ground_truth + predicted)


def confusion_metrics(confusion, class_names) -> dict:
    """The headline segmentation metrics and per-class IoU from confusion matrices
    `[R, C, C]` (rows = ground truth), as `metrics/segmentation.py` defines them: a class
    absent from both the labels and the predictions is NaN and left out of the means."""
    confusion = np.asarray(confusion, np.float64)
    true_positive = np.diagonal(confusion, axis1=1, axis2=2)
    iou, dice = iou_and_dice(confusion)
    out = {
        "mean_iou": _nanmean(iou),
        "mean_dice": _nanmean(dice),
        "pixel_accuracy": _divide(true_positive.sum(1), confusion.sum((1, 2))),
    }
    for class_id, name in enumerate(class_names):
        out[f"iou/{name}"] = iou[:, class_id]
    return out


def classification_metrics(confusion, class_names) -> dict:
    """Accuracy and per-class precision and recall from confusion matrices `[R, K, K]`."""
    confusion = np.asarray(confusion, np.float64)
    true_positive = np.diagonal(confusion, axis1=1, axis2=2)
    out = {"accuracy": _divide(true_positive.sum(1), confusion.sum((1, 2)))}
    precision, recall = _divide(true_positive, confusion.sum(1)), _divide(true_positive, confusion.sum(2))
    for class_id, name in enumerate(class_names):
        out[f"precision/{name}"] = precision[:, class_id]
        out[f"recall/{name}"] = recall[:, class_id]
    return out


def regression_metrics(sums) -> dict:
    """RMSE, MAE and R^2 (every target pooled, as `metrics/regression.py`) from `[R, 5]` sums of
    (count, squared error, absolute error, y, y^2)."""
    count, squared, absolute, total, squares = np.moveaxis(np.asarray(sums, np.float64), -1, 0)
    spread = squares - _divide(total * total, count)
    return {
        "rmse": np.sqrt(_divide(squared, count)),
        "mae": _divide(absolute, count),
        "r2": 1.0 - _divide(squared, spread),
    }
