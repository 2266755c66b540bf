"""Runs streaming metric ops the way Estimator does: reset, update per batch, read."""

import numpy as np
import tensorflow as tf


def stream(build_ops, arrays, batch_size, evaluations=2):
    """Evaluates `build_ops(*placeholders)` over `arrays` in batches.

    Args:
      build_ops: `(*tensors) -> {name: (value, update_op)}`.
      arrays: numpy arrays sharing their first dimension (the examples).
      batch_size: examples per update; the last batch may be partial.
      evaluations: how many evaluations to run in a row (state must reset).

    Returns:
      `{name: value}` of the last evaluation.
    """
    count = len(arrays[0])
    with tf.Graph().as_default():
        placeholders = [tf.compat.v1.placeholder(tf.as_dtype(a.dtype), (None,) + a.shape[1:]) for a in arrays]
        ops = build_ops(*placeholders)
        values = {name: value for name, (value, _) in ops.items()}
        updates = tf.group(*[update for _, update in ops.values()])
        with tf.compat.v1.Session() as session:
            for evaluation in range(evaluations):
                session.run(tf.compat.v1.local_variables_initializer())  # What Estimator does.
                # Earlier evaluations see other data (the reversed set, minus one example):
                # a metric that kept state across evaluations would then be off.
                data = arrays if evaluation == evaluations - 1 else [a[::-1][: max(count - 1, 1)] for a in arrays]
                for start in range(0, len(data[0]), batch_size):
                    session.run(updates, {p: a[start : start + batch_size] for p, a in zip(placeholders, data)})
                results = session.run(values)
    return results


def assert_close(got, want, key, rtol=1e-6):
    """Equal within `rtol` (relative), NaN matching NaN only."""
    if np.isnan(want):
        assert np.isnan(got), f"{key}: got {got}, want NaN"
    else:
        np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-12, err_msg=key)
