"""Regression metrics, exact over the whole evaluation set: RMSE, MAE, MAPE, R^2.

Usage:

    ops = regression_metrics(labels, predictions)          # any shapes, same shape
    # {"rmse", "mae", "mape", "r2", "mape_zero_labels"}: (value, update_op)

MAPE is the mean of |y - y_hat| / |y| over the examples with y != 0: the absolute
value makes it right for negative labels (dividing by `max(y, eps)` is not), and
examples with y == 0, where it is undefined, are left out and counted in
`mape_zero_labels` rather than dropped silently or made huge by an epsilon.

R^2 = 1 - SSE / SST, with SST accumulated by merging per-batch means and squared
deviations (Chan et al.), which stays accurate where `sum(y^2) - n mean^2` cancels.
It is NaN when every label is the same (SST = 0).
"""

import tensorflow as tf

from metrics.streaming import flat_mask, metric_variable, safe_divide, streaming_sums


def _streaming_variance(values, name):
    """Running count, mean and sum of squared deviations, merged batch by batch."""
    with tf.compat.v1.variable_scope(None, name):
        count = metric_variable([], tf.float64, "count")
        mean = metric_variable([], tf.float64, "mean")
        m2 = metric_variable([], tf.float64, "m2")
        n_a, mean_a, m2_a = count.read_value(), mean.read_value(), m2.read_value()
        n_b = tf.cast(tf.size(values), tf.float64)
        mean_b = safe_divide(tf.reduce_sum(values), n_b)
        mean_b = tf.where(n_b > 0, mean_b, tf.zeros_like(mean_b))
        m2_b = tf.reduce_sum(tf.square(values - mean_b))
        n = n_a + n_b
        delta = mean_b - mean_a
        share = tf.where(n > 0, n_b / tf.maximum(n, 1.0), 0.0)
        update_op = tf.group(
            count.assign(n),
            mean.assign(mean_a + delta * share),
            m2.assign(m2_a + m2_b + delta * delta * n_a * share),
        )
        return m2.read_value(), update_op


def regression_metrics(labels, predictions, mask=None):
    """RMSE, MAE, MAPE and R^2 of `predictions` against `labels`.

    Args:
      labels: float tensor of targets.
      predictions: float tensor, same shape.
      mask: optional bool tensor, same shape: evaluate only where True.

    Returns:
      `{name: (value, update_op)}` for `rmse`, `mae`, `mape`, `r2` and
      `mape_zero_labels` (how many examples MAPE left out because y == 0).
    """
    labels = flat_mask(tf.cast(labels, tf.float64), mask)
    predictions = flat_mask(tf.cast(predictions, tf.float64), mask)
    error = predictions - labels
    nonzero = tf.not_equal(labels, 0.0)
    relative = tf.abs(error) / tf.where(nonzero, tf.abs(labels), 1.0)
    sums, sums_update = streaming_sums(
        {
            "count": tf.ones_like(labels),
            "squared_error": tf.square(error),
            "absolute_error": tf.abs(error),
            "relative_error": tf.where(nonzero, relative, 0.0),
            "nonzero": tf.cast(nonzero, tf.float64),
        },
        "regression_sums",
    )
    total_squares, variance_update = _streaming_variance(labels, "label_variance")
    update_op = tf.group(sums_update, variance_update)
    return {
        "rmse": (tf.sqrt(safe_divide(sums["squared_error"], sums["count"])), update_op),
        "mae": (safe_divide(sums["absolute_error"], sums["count"]), update_op),
        "mape": (safe_divide(sums["relative_error"], sums["nonzero"]), update_op),
        "r2": (1.0 - safe_divide(sums["squared_error"], total_squares), update_op),
        "mape_zero_labels": (sums["count"] - sums["nonzero"], update_op),
    }
