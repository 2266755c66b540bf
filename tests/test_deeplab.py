"""DeepLab network: output shapes, seeded weights, state updates, and that it can learn."""

import math

import numpy as np
import pytest
import tensorflow as tf

from models.deeplab import DeepLab

# Tiny widths keep every graph here fast on CPU.
TINY = {"base_filters": 4, "aspp_filters": 8}


def _build(network, shape, num_outputs=3, training=False, seed=0):
    """A fresh graph with `network` applied to a placeholder of `shape`: (graph, images, outputs, first_op)."""
    graph = tf.Graph()
    with graph.as_default():
        images = tf.compat.v1.placeholder(tf.float32, shape, name="images")
        first_op = len(graph.get_operations())
        outputs = network(images, num_outputs, training=training, seed=seed)
    return graph, images, outputs, first_op


def _state_updates(graph, first_op):
    """Ops the call created that assign a variable, other than variable initializers."""
    with graph.as_default():
        initializers = {variable.initializer.name for variable in tf.compat.v1.global_variables()}
    return [
        op for op in graph.get_operations()[first_op:] if op.type.startswith("Assign") and op.name not in initializers
    ]


def _initial_weights(seed):
    graph, _, _, _ = _build(DeepLab(**TINY), [1, 16, 16, 3], seed=seed)
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        session.run(tf.compat.v1.global_variables_initializer())
        variables = tf.compat.v1.global_variables()
        return dict(zip([variable.name for variable in variables], session.run(variables)))


@pytest.mark.parametrize(
    "height, width, stride",
    [(32, 32, 8), (33, 47, 8), (33, 47, 4), (33, 47, 2), (17, 9, 16)],
)
@pytest.mark.parametrize("static", [True, False], ids=["static", "dynamic"])
def test_output_shape(height, width, stride, static):
    network = DeepLab(output_stride=stride, atrous_rates=(1, 3), block_dilations=(2,), **TINY)
    shape = [2, height, width, 3] if static else [None, None, None, 3]
    graph, images, outputs, _ = _build(network, shape, num_outputs=5)
    expected = (2, math.ceil(height / stride), math.ceil(width / stride), 5)
    if static:
        assert tuple(outputs.shape) == expected
    else:
        assert outputs.shape.as_list() == [None, None, None, 5]
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        session.run(tf.compat.v1.global_variables_initializer())
        value = session.run(outputs, {images: np.zeros((2, height, width, 3), np.float32)})
    assert value.shape == expected
    assert value.dtype == np.float32


@pytest.mark.parametrize(
    "kwargs",
    [
        {"output_stride": 1},
        {"output_stride": 0},
        {"output_stride": 6},
        {"output_stride": 12},
        {"output_stride": 8.0},
        {"output_stride": True},
        {"base_filters": 0},
        {"aspp_filters": 0},
        {"atrous_rates": ()},
        {"atrous_rates": (2, 0)},
        {"atrous_rates": (2, 1.5)},
        {"block_dilations": (-1,)},
    ],
)
def test_invalid_arguments_raise(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        DeepLab(**kwargs)


def test_valid_arguments_are_kept():
    network = DeepLab(output_stride=2, atrous_rates=[1], block_dilations=[])
    assert network.output_stride == 2
    assert network.atrous_rates == (1,)
    assert network.block_dilations == ()


def test_initial_weights_are_a_function_of_the_seed():
    first, again, other = _initial_weights(3), _initial_weights(3), _initial_weights(4)
    assert first.keys() == again.keys() == other.keys()
    kernels = [name for name in first if "kernel" in name]
    assert len(kernels) > 5
    for name in first:
        np.testing.assert_array_equal(first[name], again[name], err_msg=name)
    # Every kernel changes with the seed (batch-norm constants and biases need not).
    for name in kernels:
        assert not np.array_equal(first[name], other[name]), name
    # Layers get distinct seeds, so no two same-shaped kernels start equal.
    values = [first[name] for name in kernels]
    for i, a in enumerate(values):
        for b in values[i + 1 :]:
            assert a.shape != b.shape or not np.array_equal(a, b)


def test_training_creates_moving_average_updates_outside_update_ops():
    graph, images, _, first_op = _build(DeepLab(**TINY), [4, 24, 24, 3], training=True)
    updates = _state_updates(graph, first_op)
    with graph.as_default():
        moving = [v for v in tf.compat.v1.global_variables() if "moving_" in v.name]
        # The model_fn's collector is needed: nothing is left in UPDATE_OPS.
        assert tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS) == []
    # One update per moving mean and per moving variance.
    assert len(moving) >= 10
    assert len(updates) == len(moving)
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        session.run(tf.compat.v1.global_variables_initializer())
        before = session.run(moving)
        batch = np.random.RandomState(0).uniform(-1, 1, (4, 24, 24, 3)).astype(np.float32)
        session.run(updates, {images: batch})
        after = session.run(moving)
    assert all(not np.array_equal(a, b) for a, b in zip(before, after))


def test_inference_creates_no_state_updates():
    graph, _, _, first_op = _build(DeepLab(**TINY), [2, 24, 24, 3], training=False)
    assert _state_updates(graph, first_op) == []


def _squares(count, size, rng):
    """Dark images with one bright square each; the target is the square's mask."""
    images = np.full((count, size, size, 3), -0.8, np.float32)
    masks = np.zeros((count, size, size), np.int32)
    for i in range(count):
        side = rng.randint(size // 4, size // 2)
        top, left = rng.randint(0, size - side, 2)
        images[i, top : top + side, left : left + side] = 0.8
        masks[i, top : top + side, left : left + side] = 1
    images += rng.normal(0, 0.05, images.shape).astype(np.float32)
    return images, masks


def test_training_reduces_the_loss_on_a_toy_target():
    rng = np.random.RandomState(0)
    size, steps = 32, 30
    images_value, masks_value = _squares(8, size, rng)
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.set_random_seed(0)
        images = tf.constant(images_value)
        masks = tf.constant(masks_value)
        first_op = len(graph.get_operations())
        outputs = DeepLab(base_filters=8, aspp_filters=16)(images, 2, training=True, seed=0)
        updates = _state_updates(graph, first_op)
        logits = tf.image.resize(outputs, [size, size], method="bilinear")
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=masks, logits=logits))
        with tf.control_dependencies(updates):
            train_op = tf.compat.v1.train.AdamOptimizer(1e-2).minimize(loss)
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            losses = [session.run([train_op, loss])[1] for _ in range(steps)]
    assert updates
    assert np.all(np.isfinite(losses))
    # The best loss without looking at the image: every pixel predicts the mask's mean.
    prior = masks_value.mean()
    constant_loss = -(prior * np.log(prior) + (1 - prior) * np.log(1 - prior))
    # The last steps are far below both the first step and that constant: the net
    # finds the square, not only the class balance.
    final = np.mean(losses[-5:])
    assert final < 0.5 * losses[0], losses
    assert final < 0.5 * constant_loss, (constant_loss, losses)
