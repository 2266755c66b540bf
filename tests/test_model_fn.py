"""The model_fn in TRAIN, EVAL and PREDICT; its loss ignores label 255."""

import numpy as np
import tensorflow as tf

from models import build_model_fn

NUM_CLASSES = 3


def _features_labels(batch=2, height=8, width=12, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (batch, height, width, 3)).astype(np.uint8)
    labels = rng.integers(0, NUM_CLASSES, (batch, height, width)).astype(np.int32)
    labels[:, :2, :] = 255
    return {"image": tf.constant(images), "index": tf.constant(np.arange(batch, dtype=np.int64))}, labels


def _spec(mode, labels=None, **kwargs):
    model_fn = build_model_fn(NUM_CLASSES, ["a", "b", "c"], base_filters=4, depth=2, **kwargs)
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


def test_train_mode_steps_and_ignored_pixels_have_no_gradient():
    features, labels = _features_labels()
    changed = labels.copy()
    changed[:, :2, :] = 255  # Already ignored: set the same rows to another class below.
    other = labels.copy()
    other[:, :2, :] = 1
    losses = []
    for label_set in (changed, other):
        with tf.Graph().as_default():
            tf.compat.v1.set_random_seed(0)
            spec, _ = _spec(tf.estimator.ModeKeys.TRAIN, labels=label_set)
            assert spec.train_op is not None
            with tf.compat.v1.Session() as session:
                session.run(tf.compat.v1.global_variables_initializer())
                losses.append(session.run(spec.loss))
                session.run(spec.train_op)
                assert session.run(tf.compat.v1.train.get_global_step()) == 1
    # Labelling the ignored rows changes the loss: they really are what the mask removes.
    assert not np.isclose(losses[0], losses[1])
