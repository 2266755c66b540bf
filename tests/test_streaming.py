"""metrics/streaming.py's `streaming_concat`, which collects the per-example values and
statistics of an evaluation: every value, in order, whatever the batch sizes and however
often its store grows; and a batch's update never reads the store's value (a read copies the
whole store once it has had a sparse write, which made each batch cost the set's size)."""

import numpy as np
import pytest
import tensorflow as tf

from metrics.streaming import streaming_concat
from tests.metric_harness import stream


@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_collects_every_value_in_order(batch_size):
    values = np.random.default_rng(0).normal(size=(203, 3)).astype(np.float32)  # 609 values; a partial last batch.
    got = stream(lambda v: {"all": streaming_concat(v, "all")}, [values], batch_size)["all"]
    np.testing.assert_array_equal(got, values.astype(np.float64).reshape(-1))


def _upstream_ops(op):
    """Every op `op` depends on in its graph (data and control inputs), itself included."""
    seen, pending = set(), [op]
    while pending:
        current = pending.pop()
        current = getattr(current, "op", current)  # An assign's result stands for its op.
        if current in seen:
            continue
        seen.add(current)
        pending += [tensor.op for tensor in current.inputs] + list(current.control_inputs)
    return seen


def test_an_update_never_reads_the_store():
    with tf.Graph().as_default():
        _, update = streaming_concat(tf.ones([5, 4]), "collected")
        store = next(v for v in tf.compat.v1.local_variables() if v.name.startswith("collected/values"))
        reads = [
            op.name for op in _upstream_ops(update) if op.type == "ReadVariableOp" and op.inputs[0] is store.handle
        ]
    assert reads == []
