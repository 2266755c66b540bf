"""Helpers shared by the streaming metrics."""

import tensorflow as tf

_METRIC_COLLECTIONS = (tf.compat.v1.GraphKeys.LOCAL_VARIABLES, tf.compat.v1.GraphKeys.METRIC_VARIABLES)


def metric_variable(shape, dtype, name):
    """A zero-initialised local variable that Estimator resets before each evaluation."""
    return tf.compat.v1.Variable(
        lambda: tf.zeros(shape, dtype),
        trainable=False,
        collections=list(_METRIC_COLLECTIONS),
        name=name,
    )


def safe_divide(numerator, denominator):
    """`numerator / denominator`, NaN where the denominator is 0 (undefined, not 0)."""
    nan = tf.constant(float("nan"), numerator.dtype)
    return tf.where(denominator > 0, numerator / tf.where(denominator > 0, denominator, 1), nan)


def nanmean(values):
    """Mean over the finite entries; NaN when there are none."""
    defined = tf.math.is_finite(values)
    count = tf.reduce_sum(tf.cast(defined, values.dtype))
    total = tf.reduce_sum(tf.where(defined, values, tf.zeros_like(values)))
    return safe_divide(total, count)


def example_count(values, name="num_examples"):
    """Counts the examples (leading dimension of `values`) seen by the evaluation."""
    with tf.compat.v1.variable_scope(None, name):
        total = metric_variable([], tf.int64, "total")
        update_op = total.assign_add(tf.cast(tf.shape(values)[0], tf.int64))
        return tf.identity(total.read_value(), name="value"), update_op
