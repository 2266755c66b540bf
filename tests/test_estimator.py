"""core/estimator.py: evaluations that keep one EVAL graph and session give exactly what
stock Estimator gives (results, event files, hook calls), checkpoint after checkpoint."""

import os

import gin
import numpy as np
import pytest
import tensorflow as tf

from core import configurables
from core.estimator import Estimator
from tests.conftest import REPO_ROOT, TINY_VAL, tiny_gin_params
from tests.helpers import event_tags


class CallRecorder(tf.compat.v1.train.SessionRunHook):
    """Records each call, the loss of every batch and the global step at `after_create_session`."""

    def __init__(self):
        self.calls = []

    def begin(self):
        self.calls.append("begin")
        self.loss = tf.compat.v1.losses.get_losses()[0]  # The task's loss, made by the model_fn.

    def after_create_session(self, session, coord):
        self.calls.append(f"after_create_session step={session.run(tf.compat.v1.train.get_global_step())}")

    def before_run(self, run_context):
        return tf.compat.v1.train.SessionRunArgs(self.loss)

    def after_run(self, run_context, run_values):
        self.calls.append(f"batch loss={run_values.results:.6f}")

    def end(self, session):
        self.calls.append("end")


class AddsOpsInBegin(tf.compat.v1.train.SessionRunHook):
    """A hook that makes an op in `begin`: allowed on a new graph, not on a kept one."""

    def begin(self):
        self.op = tf.constant(1.0) * 2.0


@pytest.fixture(scope="module")
def checkpoints(tiny_dataset, tmp_path_factory):
    """A tiny run's model_fn, eval input_fn and checkpoints at steps 2, 4 and 6 (gin stays
    configured for the module: a test makes another input_fn)."""
    gin.clear_config()
    params = tiny_gin_params(tiny_dataset, SUMMARY_INDICES=[0, 5], DETERMINISTIC=True)
    configurables.parse_gin([os.path.join(REPO_ROOT, "configs/synthetic.gin")], params)
    model_fn = configurables.build_model_fn()
    with gin.config_scope("train"):
        train_fn = configurables.make_input_fn()
    with gin.config_scope("eval"):
        eval_fn = configurables.make_input_fn()
    model_dir = str(tmp_path_factory.mktemp("kept") / "model")
    config = tf.estimator.RunConfig(model_dir=model_dir, tf_random_seed=42, save_checkpoints_steps=2)
    tf.estimator.Estimator(model_fn, config=config).train(train_fn, max_steps=6)
    paths = [os.path.join(model_dir, f"model.ckpt-{step}") for step in (2, 4, 6)]
    yield model_fn, eval_fn, model_dir, paths
    gin.clear_config()  # Unlocked again for the modules after this one, as the others leave it.


def _evaluate_all(estimator, eval_fn, paths, name, hook=None):
    return [
        estimator.evaluate(eval_fn, checkpoint_path=path, name=name, hooks=[hook] if hook else None) for path in paths
    ]


def _same(result, expected):
    assert result.keys() == expected.keys()
    for key, value in expected.items():
        if isinstance(value, bytes):  # A serialized Summary (a panel, the confusion table).
            assert result[key] == value, key
        else:
            np.testing.assert_array_equal(result[key], value, err_msg=key)


def test_kept_graph_evaluations_equal_stock_ones_checkpoint_after_checkpoint(checkpoints):
    model_fn, eval_fn, model_dir, paths = checkpoints
    stock_hook, kept_hook = CallRecorder(), CallRecorder()
    stock = _evaluate_all(Estimator(model_fn, model_dir, keep_eval_graph=False), eval_fn, paths, "stock", stock_hook)
    kept_estimator = Estimator(model_fn, model_dir)
    kept = _evaluate_all(kept_estimator, eval_fn, paths, "kept", kept_hook)
    graph = kept_estimator._kept.graph
    assert graph.finalized
    # Checkpoints out of order and again: each restore replaces the weights, each evaluation starts from zero.
    again = _evaluate_all(kept_estimator, eval_fn, [paths[2], paths[0]], "kept_again")
    assert kept_estimator._kept.graph is graph  # One graph for every evaluation.
    assert [r["global_step"] for r in stock] == [2, 4, 6]
    assert len({float(r["loss"]) for r in stock}) == 3  # The checkpoints differ.
    for result, expected in zip(kept + again, stock + [stock[2], stock[0]]):
        _same(result, expected)
    # Every hook call, every evaluation, in stock order: 3 batches of 3, 3 and 1 examples.
    assert kept_hook.calls == stock_hook.calls
    batches = -(-TINY_VAL // 3)
    assert kept_hook.calls[: batches + 3] == ["begin", "after_create_session step=2"] + kept_hook.calls[
        2 : batches + 2
    ] + ["end"]
    # The event files hold the same tags at the same steps (scalars, panels, the checkpoint path).
    assert event_tags(os.path.join(model_dir, "eval_kept")) == event_tags(os.path.join(model_dir, "eval_stock"))
    assert "checkpoint_path" in event_tags(os.path.join(model_dir, "eval_kept"))


def test_kept_graph_counts_steps_and_follows_a_new_input_fn(checkpoints):
    model_fn, eval_fn, model_dir, paths = checkpoints
    estimator, stock = Estimator(model_fn, model_dir), Estimator(model_fn, model_dir, keep_eval_graph=False)
    for steps in (1, 2, None):  # steps: the first batches only, as stock.
        _same(
            estimator.evaluate(eval_fn, steps=steps, checkpoint_path=paths[1], name="steps"),
            stock.evaluate(eval_fn, steps=steps, checkpoint_path=paths[1], name="steps_stock"),
        )
    graph = estimator._kept.graph
    with gin.config_scope("eval"):
        other_fn = configurables.make_input_fn(batch_size=2)
    _same(
        estimator.evaluate(other_fn, checkpoint_path=paths[1], name="other"),
        stock.evaluate(other_fn, checkpoint_path=paths[1], name="other_stock"),
    )
    assert estimator._kept.graph is not graph and estimator._kept.input_fn is other_fn


def test_a_hook_that_adds_ops_sends_the_estimator_back_to_stock_evaluation(checkpoints, capsys):
    model_fn, eval_fn, model_dir, paths = checkpoints
    estimator = Estimator(model_fn, model_dir)
    stock = Estimator(model_fn, model_dir, keep_eval_graph=False)
    hook = AddsOpsInBegin()
    first = estimator.evaluate(eval_fn, checkpoint_path=paths[0], name="adds", hooks=[hook])
    second = estimator.evaluate(eval_fn, checkpoint_path=paths[2], name="adds", hooks=[hook])
    assert "a hook adds ops to the EVAL graph" in capsys.readouterr().err
    assert estimator._kept is None and not estimator._keep_eval_graph
    _same(first, stock.evaluate(eval_fn, checkpoint_path=paths[0], name="adds_stock"))
    _same(second, stock.evaluate(eval_fn, checkpoint_path=paths[2], name="adds_stock"))


def test_a_failed_evaluation_drops_the_kept_graph(checkpoints, tmp_path):
    model_fn, eval_fn, model_dir, paths = checkpoints
    estimator = Estimator(model_fn, model_dir)
    estimator.evaluate(eval_fn, checkpoint_path=paths[0], name="fails")
    with pytest.raises(ValueError, match="not a valid checkpoint"):
        estimator.evaluate(eval_fn, checkpoint_path=str(tmp_path / "model.ckpt-9"), name="fails")
    assert estimator._kept is None
    _same(
        estimator.evaluate(eval_fn, checkpoint_path=paths[0], name="fails"),
        Estimator(model_fn, model_dir, keep_eval_graph=False).evaluate(eval_fn, checkpoint_path=paths[0], name="x"),
    )


def _dropout_model_fn(features, labels, mode, config):
    """A linear model whose EVAL graph runs a stateful random op (dropout)."""
    weights = tf.compat.v1.get_variable("w", [4, 1], initializer=tf.compat.v1.ones_initializer())
    outputs = tf.nn.dropout(tf.matmul(features["x"], weights), rate=0.5, seed=1)
    loss = tf.reduce_mean(tf.square(outputs - labels))
    train_op = tf.compat.v1.assign_add(tf.compat.v1.train.get_or_create_global_step(), 1)
    metrics = {"mean_output": tf.compat.v1.metrics.mean(outputs)}
    return tf.estimator.EstimatorSpec(mode, loss=loss, train_op=train_op, eval_metric_ops=metrics)


def _arrays():
    rng = np.random.default_rng(0)
    return rng.normal(size=(20, 4)).astype(np.float32), rng.normal(size=(20, 1)).astype(np.float32)


def _dataset_fn():
    x, y = _arrays()
    return tf.data.Dataset.from_tensor_slices(({"x": x}, y)).batch(8)


def _tensors_fn():  # Tensors from a one-shot iterator: nothing in the graph restarts them.
    return tf.compat.v1.data.make_one_shot_iterator(_dataset_fn()).get_next()


@pytest.mark.parametrize(
    "input_fn, model_fn, reason",
    [(_tensors_fn, "linear", "returns no tf.data.Dataset"), (_dataset_fn, "dropout", "stateful op")],
)
def test_graphs_a_second_evaluation_could_not_repeat_take_the_stock_path(input_fn, model_fn, reason, tmp_path, capsys):
    def linear(features, labels, mode, config):  # The same model without dropout.
        weights = tf.compat.v1.get_variable("w", [4, 1], initializer=tf.compat.v1.ones_initializer())
        outputs = tf.matmul(features["x"], weights)
        loss = tf.reduce_mean(tf.square(outputs - labels))
        train_op = tf.compat.v1.assign_add(tf.compat.v1.train.get_or_create_global_step(), 1)
        metrics = {"mean_output": tf.compat.v1.metrics.mean(outputs)}
        return tf.estimator.EstimatorSpec(mode, loss=loss, train_op=train_op, eval_metric_ops=metrics)

    model_fn = {"linear": linear, "dropout": _dropout_model_fn}[model_fn]
    config = tf.estimator.RunConfig(model_dir=str(tmp_path), tf_random_seed=42)
    tf.estimator.Estimator(model_fn, config=config).train(_dataset_fn, max_steps=1)
    kept, stock = Estimator(model_fn, config=config), Estimator(model_fn, config=config, keep_eval_graph=False)
    results = [kept.evaluate(input_fn, name="kept") for _ in range(3)]
    assert f"{reason}" in capsys.readouterr().err and kept._kept is None and not kept._keep_eval_graph
    expected = [stock.evaluate(input_fn, name="stock") for _ in range(3)]
    for result, reference in zip(results, expected):
        _same(result, reference)
    assert results[0]["loss"] > 0 and results[2]["loss"] == results[0]["loss"]  # Not the zeros of an exhausted input.
