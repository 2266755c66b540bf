"""Building blocks shared by the streaming metrics.

Every accumulator is a local metric variable (collections LOCAL_VARIABLES and
METRIC_VARIABLES): Estimator re-initialises them at the start of each evaluation,
so each metric covers exactly one evaluation, whatever the number of batches.
Sums are float64 (exact integer counts up to 2**53).
"""

import tensorflow as tf

from common import determinism

_METRIC_COLLECTIONS = (tf.compat.v1.GraphKeys.LOCAL_VARIABLES, tf.compat.v1.GraphKeys.METRIC_VARIABLES)


def metric_variable(shape, dtype, name, validate_shape=True):
    """A zero-initialised local variable that Estimator resets before each evaluation.

    With `validate_shape=False` and a `None` dimension in `shape`, the variable can
    grow (used to collect scores for an exact AUC).
    """
    return tf.compat.v1.Variable(
        lambda: tf.zeros([0 if d is None else d for d in shape], dtype),
        trainable=False,
        collections=list(_METRIC_COLLECTIONS),
        validate_shape=validate_shape,
        shape=tf.TensorShape(shape) if not validate_shape else None,
        name=name,
    )


def histogram(ids, size: int, weights=None, dtype=tf.int64):
    """Counts (or `weights` summed) of each value of `ids` in [0, size): [size] of `dtype`.

    One raw `Bincount` (tf.math.bincount adds a pass for max(ids) even when the size is
    fixed, and runs DenseBincount); values >= size are not counted, which is how callers drop entries (a
    mask sends them to `size`); a negative value fails ("Input arr must be non-negative").
    On the CPU on purpose (`determinism.on_host()`): Bincount has no deterministic GPU
    kernel, and its inputs are one int32 per pixel.
    """
    with determinism.on_host():
        weights = tf.constant([], dtype) if weights is None else tf.reshape(tf.cast(weights, dtype), [-1])
        counts = tf.raw_ops.Bincount(arr=tf.reshape(ids, [-1]), size=size, weights=weights)
    return tf.reshape(counts, [size]) if isinstance(size, int) else counts


def safe_divide(numerator, denominator):
    """`numerator / denominator`, NaN where the denominator is 0 (undefined, not 0)."""
    nan = tf.constant(float("nan"), numerator.dtype)
    return tf.where(denominator > 0, numerator / tf.where(denominator > 0, denominator, 1), nan)


def nanmean(values, axis=None):
    """Mean over the finite entries (of `axis`; None: all); NaN when there are none."""
    defined = tf.math.is_finite(values)
    count = tf.reduce_sum(tf.cast(defined, values.dtype), axis)
    total = tf.reduce_sum(tf.where(defined, values, tf.zeros_like(values)), axis)
    return safe_divide(total, count)


def flat_mask(values, mask):
    """Flattens `values` and drops the entries where `mask` (same shape) is False."""
    values = tf.reshape(values, [-1])
    if mask is None:
        return values
    return tf.boolean_mask(values, tf.reshape(tf.cast(mask, tf.bool), [-1]))


def streaming_totals(named_values, name):
    """Accumulates float64 tensors of static shapes (a scalar, a count per bin or per class)
    across batches, element by element, with one update op.

    Args:
      named_values: `{key: tensor}`, each this batch's contribution.
      name: variable scope.

    Returns:
      `({key: running_total}, update_op)`.
    """
    with tf.compat.v1.variable_scope(None, name):
        totals, updates = {}, []
        for key, value in named_values.items():
            value = tf.cast(value, tf.float64)
            if not value.shape.is_fully_defined():
                raise ValueError(f"streaming_totals: {key!r} needs a static shape, got {value.shape}")
            total = metric_variable(value.shape.as_list(), tf.float64, key)
            updates.append(total.assign_add(value))
            totals[key] = total.read_value()
        return totals, tf.group(*updates)


def streaming_sums(named_values, name):
    """Accumulates float64 sums of several tensors with one update op.

    Args:
      named_values: `{key: tensor}`; each tensor is summed over all its entries.
      name: variable scope.

    Returns:
      `({key: running_sum}, update_op)`.
    """
    return streaming_totals({key: tf.reduce_sum(tf.cast(v, tf.float64)) for key, v in named_values.items()}, name)


def streaming_mean(values, mask=None, name="mean"):
    """Exact mean of all (unmasked) entries seen: `(value, update_op)`; NaN if none."""
    values = flat_mask(values, mask)
    sums, update_op = streaming_sums({"total": values, "count": tf.ones_like(values, tf.float64)}, name)
    return safe_divide(sums["total"], sums["count"]), update_op


def streaming_concat(values, name):
    """Collects every value seen, in order, into one 1-D float64 variable.

    Memory grows with the evaluation set (8 bytes a value): what an exact, sort-based
    metric such as ROC AUC needs, and the per-example values and statistics. The store's
    capacity doubles when full and each batch is written into its free end, so a batch
    costs its own size, not a copy of everything collected so far (`bench/eval.py`'s
    `hooks_growth_ratio`): nothing in a batch's update reads the store's value.

    Returns:
      `(all_values_so_far, update_op)`.
    """
    with tf.compat.v1.variable_scope(None, name):
        store = metric_variable([None], tf.float64, "values", validate_shape=False)
        count = metric_variable([], tf.int64, "count")
        new = tf.cast(tf.reshape(values, [-1]), tf.float64)
        end = count + tf.size(new, out_type=tf.int64)
        # The capacity from the variable's shape, not its value: once a variable has had a
        # sparse write, each read of its value copies it whole (TensorFlow's copy-on-read
        # mode), so `tf.size(store)` would copy everything collected at every batch.
        capacity = tf.raw_ops.VariableShape(input=store.handle, out_type=tf.int64)[0]

        def grown():
            extra = tf.maximum(end, 2 * capacity) - capacity
            return store.assign(tf.concat([store.read_value(), tf.zeros([extra], tf.float64)], 0)).op

        resized = tf.cond(end > capacity, grown, tf.no_op)
        with tf.control_dependencies([resized]):
            written = store.scatter_update(tf.IndexedSlices(new, tf.range(count, end)))
        with tf.control_dependencies([written]):
            update_op = count.assign(end)
        return store.read_value()[: count.read_value()], update_op


def example_count(values, name="num_examples"):
    """Counts the examples (leading dimension of `values`) seen by the evaluation."""
    with tf.compat.v1.variable_scope(None, name):
        total = metric_variable([], tf.int64, "total")
        update_op = total.assign_add(tf.cast(tf.shape(values)[0], tf.int64))
        return tf.identity(total.read_value(), name="value"), update_op
