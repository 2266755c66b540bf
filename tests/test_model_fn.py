"""The model_fn in TRAIN, EVAL and PREDICT for each task; its segmentation loss ignores
label 255; it runs a network's state updates without the network's help."""

import numpy as np
import pytest
import tensorflow as tf

from models import build_model_fn
from models.classification import Classification
from models.losses import soft_dice
from models.regression import Regression
from models.segmentation import Segmentation
from models.unet import UNet

NUM_CLASSES = 3


def _features_labels(batch=2, height=8, width=12, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (batch, height, width, 3)).astype(np.uint8)
    labels = rng.integers(0, NUM_CLASSES, (batch, height, width)).astype(np.int32)
    labels[:, :2, :] = 255
    return {"image": tf.constant(images), "index": tf.constant(np.arange(batch, dtype=np.int64))}, labels


def _spec(mode, labels=None, task=None, **kwargs):
    model_fn = build_model_fn(UNet(4, 2), task or Segmentation(NUM_CLASSES, ["a", "b", "c"]), **kwargs)
    features, default_labels = _features_labels()
    labels = default_labels if labels is None else labels
    label_tensor = None if mode == tf.estimator.ModeKeys.PREDICT else tf.constant(labels)
    return model_fn(features, label_tensor, mode, params={}, config=None), labels


def test_predict_mode_outputs_and_export_signature():
    with tf.Graph().as_default():
        spec, _ = _spec(tf.estimator.ModeKeys.PREDICT)
        assert set(spec.predictions) == {"classes", "probabilities", "index"}
        assert spec.predictions["classes"].shape.as_list() == [2, 8, 12]
        assert spec.predictions["probabilities"].shape.as_list() == [2, 8, 12, NUM_CLASSES]
        assert set(spec.export_outputs["serving_default"].outputs) == {"classes", "probabilities"}


def test_eval_loss_is_the_mean_cross_entropy_over_non_ignored_pixels():
    with tf.Graph().as_default():
        spec, labels = _spec(tf.estimator.ModeKeys.EVAL)
        assert "mean_iou" in spec.eval_metric_ops and "iou/b" in spec.eval_metric_ops
        with tf.compat.v1.Session() as session:
            session.run([tf.compat.v1.global_variables_initializer(), tf.compat.v1.local_variables_initializer()])
            loss, probabilities = session.run([spec.loss, spec.predictions["probabilities"]])
    valid = labels != 255
    picked = np.take_along_axis(probabilities, np.where(valid, labels, 0)[..., None], axis=-1)[..., 0]
    reference = -np.log(picked[valid]).mean()
    np.testing.assert_allclose(loss, reference, rtol=1e-5)


def test_the_dice_term_is_the_soft_dice_over_valid_pixels_an_absent_class_counting_one():
    _, labels = _features_labels()
    labels[labels == 2] = 1  # Class 2 in no label: its term is (0 + 1) / (sum of p + 1).
    with tf.Graph().as_default():
        spec, _ = _spec(tf.estimator.ModeKeys.EVAL, labels, Segmentation(NUM_CLASSES, dice_weight=0.5))
        with tf.compat.v1.Session() as session:
            session.run([tf.compat.v1.global_variables_initializer(), tf.compat.v1.local_variables_initializer()])
            loss, probabilities = session.run([spec.loss, spec.predictions["probabilities"]])
    valid = labels != 255
    p, y = probabilities[valid].astype(np.float64), np.eye(NUM_CLASSES)[labels[valid]]
    cross_entropy = -np.log((p * y).sum(1)).mean()
    dice = (2 * (p * y).sum(0) + 1) / (p.sum(0) + y.sum(0) + 1)
    assert y[:, 2].sum() == 0 and 0 < dice[2] < 1
    np.testing.assert_allclose(loss, cross_entropy + 0.5 * (1 - dice.mean()), rtol=1e-5)
    # Ignored pixels take no part: no gradient reaches their logits.
    with tf.Graph().as_default():
        logits = tf.constant(np.random.default_rng(1).normal(size=(*labels.shape, NUM_CLASSES)), tf.float32)
        dice_value = soft_dice(logits, tf.constant(np.where(valid, labels, 0)), tf.constant(valid), NUM_CLASSES)
        (gradient,) = tf.compat.v1.gradients(dice_value, logits)
        with tf.compat.v1.Session() as session:
            gradient = session.run(gradient)
    assert not np.abs(gradient[~valid]).any() and np.abs(gradient[valid]).sum(-1).min() > 0
    with pytest.raises(ValueError, match="dice_weight must be >= 0, got -1"):
        Segmentation(NUM_CLASSES, dice_weight=-1)


@pytest.mark.parametrize("dice_weight", [0.0, 0.5])
def test_train_mode_steps_and_ignored_pixels_have_no_gradient(dice_weight):
    features, labels = _features_labels()
    changed = labels.copy()
    changed[:, :2, :] = 255  # Already ignored: set the same rows to another class below.
    other = labels.copy()
    other[:, :2, :] = 1
    losses = []
    for label_set in (changed, other):
        with tf.Graph().as_default():
            tf.compat.v1.set_random_seed(0)
            spec, _ = _spec(tf.estimator.ModeKeys.TRAIN, label_set, Segmentation(NUM_CLASSES, dice_weight=dice_weight))
            assert spec.train_op is not None
            with tf.compat.v1.Session() as session:
                session.run(tf.compat.v1.global_variables_initializer())
                losses.append(session.run(spec.loss))
                session.run(spec.train_op)
                assert session.run(tf.compat.v1.train.get_global_step()) == 1
    # Labelling the ignored rows changes the loss: they really are what the mask removes.
    assert not np.isclose(losses[0], losses[1])


class _BatchNormNet:
    """A network that knows nothing of UPDATE_OPS: one conv, one Keras batch norm."""

    def __call__(self, images, num_outputs, training=False, seed=0):
        layers = tf.keras.layers
        x = layers.Conv2D(4, 3, padding="same", kernel_initializer=tf.keras.initializers.GlorotUniform(seed))(images)
        x = layers.BatchNormalization(name="norm")(x, training=training)
        return layers.Conv2D(num_outputs, 1, kernel_initializer=tf.keras.initializers.GlorotUniform(seed + 1))(x)


def test_train_op_runs_the_networks_batch_norm_updates():
    with tf.Graph().as_default():
        features, labels = _features_labels()
        spec = build_model_fn(_BatchNormNet(), Segmentation(NUM_CLASSES))(
            features, tf.constant(labels), tf.estimator.ModeKeys.TRAIN, {}, None
        )
        assert not tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)
        moving_mean = [v for v in tf.compat.v1.global_variables() if "moving_mean" in v.name][0]
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            before = session.run(moving_mean)
            session.run(spec.train_op)
            after = session.run(moving_mean)
    np.testing.assert_array_equal(before, np.zeros(4))
    assert np.all(after != 0), after  # Updated from the batch statistics.


def test_gradients_are_not_gated_so_a_layers_two_gradients_run_side_by_side():
    """GATE_NONE, not the v1 optimizer's GATE_OP: GATE_OP groups each op's input gradients
    (`<op>_grad/tuple/...`), which idled the second core (docs/benchmarks.md, mixed precision)."""
    with tf.Graph().as_default() as graph:
        spec, _ = _spec(tf.estimator.ModeKeys.TRAIN)
        gated = [op.name for op in graph.get_operations() if "_grad/tuple/" in op.name]
        assert spec.train_op is not None and any(op.name.startswith("gradients/") for op in graph.get_operations())
    assert not gated, gated[:3]


def test_state_updates_finds_both_batch_norm_moving_averages_and_no_initializer():
    from models.model_fn import state_updates

    with tf.Graph().as_default() as graph:
        images = tf.zeros([2, 8, 8, 3])
        first = len(graph.get_operations())
        _BatchNormNet()(images, 3, training=True)
        updates = state_updates(graph, first)
        initializers = {v.initializer.name for v in tf.compat.v1.global_variables()}
    assert len(updates) == 2 and not {op.name for op in updates} & initializers, [op.name for op in updates]
    targets = {op.inputs[0].name for op in updates}  # The variable each op assigns.
    assert targets == {"norm/moving_mean:0", "norm/moving_variance:0"}, targets


def _run_mode(task, labels, mode):
    with tf.Graph().as_default():
        features, _ = _features_labels()
        spec = build_model_fn(UNet(4, 2), task)(
            features, None if labels is None else tf.constant(labels), mode, {}, None
        )
        with tf.compat.v1.Session() as session:
            session.run([tf.compat.v1.global_variables_initializer(), tf.compat.v1.local_variables_initializer()])
            session.run(tf.compat.v1.tables_initializer())
            if mode == tf.estimator.ModeKeys.PREDICT:
                return spec, session.run(spec.export_outputs["serving_default"].outputs)
            if mode == tf.estimator.ModeKeys.EVAL:
                session.run([update for _, update in spec.eval_metric_ops.values()])
                values = {k: v for k, (v, _) in spec.eval_metric_ops.items() if not k.startswith("images/")}
                return spec, session.run(values)
            session.run(spec.train_op)
            return spec, None


def test_classification_head_in_every_mode():
    task = Classification(3, ["x", "y", "z"], top_k=(2,))
    labels = np.array([0, 2], np.int32)
    _, outputs = _run_mode(task, None, tf.estimator.ModeKeys.PREDICT)
    assert outputs["classes"].shape == (2,) and outputs["probabilities"].shape == (2, 3)
    np.testing.assert_allclose(outputs["probabilities"].sum(-1), 1.0, rtol=1e-5)
    _, values = _run_mode(task, labels, tf.estimator.ModeKeys.EVAL)
    for key in ("accuracy", "roc_auc", "precision_at_2", "cross_entropy", "recall/z", "per_example/index"):
        assert key in values, key
    assert values["num_examples"] == 2 and values["confusion_matrix"].sum() == 2
    # The per-example probability of the true class is the softmax entry of that class.
    probabilities = outputs["probabilities"]
    np.testing.assert_allclose(values["per_example/true_class_probability"], probabilities[[0, 1], labels], rtol=1e-5)
    _run_mode(task, labels, tf.estimator.ModeKeys.TRAIN)


def test_regression_head_in_every_mode():
    task = Regression(2, ["area", "count"])
    labels = np.array([[0.5, 2.0], [0.1, 1.0]], np.float32)
    _, outputs = _run_mode(task, None, tf.estimator.ModeKeys.PREDICT)
    predictions = outputs["predictions"]
    assert predictions.shape == (2, 2)
    _, values = _run_mode(task, labels, tf.estimator.ModeKeys.EVAL)
    np.testing.assert_allclose(values["rmse"], np.sqrt(np.mean((predictions - labels) ** 2)), rtol=1e-5)
    np.testing.assert_allclose(
        values["rmse/count"], np.sqrt(np.mean((predictions[:, 1] - labels[:, 1]) ** 2)), rtol=1e-5
    )
    np.testing.assert_allclose(values["per_example/absolute_error"], np.abs(predictions - labels).mean(-1), rtol=1e-5)
    _run_mode(task, labels, tf.estimator.ModeKeys.TRAIN)


def test_the_learning_rate_warms_up_then_follows_a_cosine():
    """`learning_rate_at` against the schedule written out in numpy: a linear warm-up over
    `warmup_steps`, then a cosine to 0 over the rest of `decay_steps`, 0 after it."""
    from models.model_fn import learning_rate_at

    peak, decay, warmup = 2e-3, 100, 10
    steps = np.array([0, 1, 4, 9, 10, 11, 50, 99, 100, 130], np.int64)
    after = np.clip(steps - warmup, 0, decay - warmup)
    expected = peak * 0.5 * (1 + np.cos(np.pi * after / (decay - warmup))) * np.minimum((steps + 1) / warmup, 1.0)
    got = [float(learning_rate_at(tf.constant(s), peak, decay, warmup)) for s in steps]
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9)
    assert got[3] == max(got)  # Step 9, the peak is reached at the end of the warm-up.
    constant = [float(learning_rate_at(tf.constant(s), peak, 0, warmup)) for s in (0, 9, 100)]
    np.testing.assert_allclose(constant, [peak / warmup, peak, peak], rtol=1e-6)
    assert float(learning_rate_at(tf.constant(7, tf.int64), peak)) == peak
    # A warm-up longer than a tenth of the decay is cut to that tenth: the run still peaks.
    short = [float(learning_rate_at(tf.constant(s), peak, 30, 100)) for s in (0, 2, 4)]
    np.testing.assert_allclose(short, [peak / 3, peak, peak * 0.5 * (1 + np.cos(np.pi / 27))], rtol=1e-6)
