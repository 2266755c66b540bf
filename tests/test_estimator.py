"""core/estimator.py: evaluations that keep one EVAL graph and session give exactly what
stock Estimator gives (results, event files, hook calls), checkpoint after checkpoint."""

import glob
import importlib.metadata
import logging
import os
import re

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


def test_one_kept_graph_per_input_fn_up_to_max_eval_graphs(checkpoints):
    """Evaluation sets (EVAL_SETS): A, B, A keeps A's graph with two kept (with one, the
    test above: another input_fn replaces it); a failed evaluation drops its own graph
    only; each result is stock's."""
    model_fn, eval_fn, model_dir, paths = checkpoints
    with gin.config_scope("eval"):
        other_fn = configurables.make_input_fn(batch_size=2)
    stock = Estimator(model_fn, model_dir, keep_eval_graph=False)
    expected = {fn: stock.evaluate(fn, checkpoint_path=paths[1], name="lru_stock") for fn in (eval_fn, other_fn)}
    estimator = Estimator(model_fn, model_dir, max_eval_graphs=2)
    graphs = []
    for fn in (eval_fn, other_fn, eval_fn):
        _same(estimator.evaluate(fn, checkpoint_path=paths[1], name="lru"), expected[fn])
        graphs.append(estimator._kept.graph)
    assert len(estimator._kept_graphs) == 2 and graphs[2] is graphs[0] and graphs[1] is not graphs[0]
    # A checkpoint that is not one: that evaluation's graph goes, not A's.
    with pytest.raises((ValueError, tf.errors.NotFoundError)):
        estimator = Estimator(model_fn, model_dir, max_eval_graphs=2)
        estimator.evaluate(eval_fn, checkpoint_path=paths[1], name="lru")
        kept = estimator._kept
        estimator.evaluate(other_fn, checkpoint_path=os.path.join(model_dir, "model.ckpt-99999"), name="lru")
    assert estimator._kept_graphs == [kept]


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


def _linear(features, labels, mode, noise=lambda outputs: outputs, **spec):
    """A linear model in a few ops; `noise` changes its outputs, `spec` adds to its EstimatorSpec."""
    weights = tf.compat.v1.get_variable("w", [4, 1], initializer=tf.compat.v1.ones_initializer())
    outputs = noise(tf.matmul(features["x"], weights))
    loss = tf.reduce_mean(tf.square(outputs - labels))
    train_op = tf.compat.v1.assign_add(tf.compat.v1.train.get_or_create_global_step(), 1)
    metrics = {"mean_output": tf.compat.v1.metrics.mean(outputs)}
    return tf.estimator.EstimatorSpec(mode, loss=loss, train_op=train_op, eval_metric_ops=metrics, **spec)


def _linear_model_fn(features, labels, mode):
    return _linear(features, labels, mode)


@tf.function
def _noisy(outputs):
    return outputs + tf.random.uniform(tf.shape(outputs), seed=3)


# Models whose EVAL graph draws random numbers with a stateful op, outside and inside functions.
RANDOM_NOISE = {
    "dropout": lambda outputs: tf.nn.dropout(outputs, rate=0.5, seed=1),
    "tf.cond": lambda outputs: tf.cond(
        tf.reduce_sum(outputs) > -1e9, lambda: outputs + tf.random.uniform([1], seed=3), lambda: outputs
    ),
    # One row at a time: rows drawing from one kernel in parallel would not repeat in stock either.
    "tf.map_fn": lambda outputs: tf.map_fn(
        lambda row: row + tf.random.uniform([1], seed=3), outputs, parallel_iterations=1
    ),
    "tf.function": _noisy,
}


def _arrays():
    rng = np.random.default_rng(0)
    return rng.normal(size=(20, 4)).astype(np.float32), rng.normal(size=(20, 1)).astype(np.float32)


def _dataset_fn():
    x, y = _arrays()
    return tf.data.Dataset.from_tensor_slices(({"x": x}, y)).batch(8)


def _tensors_fn():  # Tensors from a one-shot iterator: nothing in the graph restarts them.
    return tf.compat.v1.data.make_one_shot_iterator(_dataset_fn()).get_next()


def _trained(model_fn, tmp_path, params=None):
    """A stock Estimator trained one step, and its RunConfig."""
    config = tf.estimator.RunConfig(model_dir=str(tmp_path), tf_random_seed=42)
    tf.estimator.Estimator(model_fn, config=config, params=params).train(_dataset_fn, max_steps=1)
    return config


def _kept_and_stock(model_fn, config, params=None):
    return Estimator(model_fn, config=config, params=params), Estimator(
        model_fn, config=config, params=params, keep_eval_graph=False
    )


class Probe(tf.compat.v1.train.SessionRunHook):
    """Fetches the tensors of the graph's "probe" collection at every batch, and records them."""

    def __init__(self):
        self.values = []

    def begin(self):
        self.probe = tf.compat.v1.get_collection("probe")

    def before_run(self, run_context):
        return tf.compat.v1.train.SessionRunArgs(self.probe)

    def after_run(self, run_context, run_values):
        self.values.append([float(np.sum(value)) for value in run_values.results])


def _random_probe_model_fn(features, labels, mode):  # Random numbers only a hook fetches.
    tf.compat.v1.add_to_collection("probe", tf.random.uniform([2], seed=5))
    return _linear(features, labels, mode)


@pytest.mark.parametrize("noise", [*RANDOM_NOISE, "fetched by a hook"])
def test_stateful_random_ops_anywhere_a_run_reaches_send_it_back_to_stock(noise, tmp_path, capsys):
    """Three evaluations of one checkpoint: stock draws the same numbers each time, a kept
    session would go on drawing; detected inside functions and in a hook's fetches."""
    if noise == "fetched by a hook":
        model_fn = _random_probe_model_fn
    else:

        def model_fn(features, labels, mode):
            return _linear(features, labels, mode, RANDOM_NOISE[noise])

    kept, stock = _kept_and_stock(model_fn, _trained(model_fn, tmp_path))
    kept_probe, stock_probe = Probe(), Probe()
    results = [kept.evaluate(_dataset_fn, name="kept", hooks=[kept_probe]) for _ in range(3)]
    assert "draws random numbers with a stateful op" in capsys.readouterr().err
    assert kept._kept is None and not kept._keep_eval_graph
    expected = [stock.evaluate(_dataset_fn, name="stock", hooks=[stock_probe]) for _ in range(3)]
    for result, reference in zip(results, expected):
        _same(result, reference)
    assert kept_probe.values == stock_probe.values
    if noise == "fetched by a hook":
        assert (
            len({str(values) for values in stock_probe.values}) == 3
        )  # Each batch draws anew, each evaluation repeats.


@tf.function
def _scaled(outputs, scale):
    return outputs * scale.read_value()  # A variable read: a StatefulPartitionedCall, not random.


def test_functions_and_control_flow_without_random_ops_stay_kept(tmp_path, capsys):
    """The walk into function bodies finds nothing to send back to stock in these."""

    def noise(outputs):
        outputs = tf.cond(tf.reduce_sum(outputs) > -1e9, lambda: outputs + 1.0, lambda: outputs)
        scale = tf.compat.v1.get_variable("scale", [], initializer=tf.compat.v1.constant_initializer(2.0))
        return _scaled(tf.map_fn(lambda row: row * 3.0, outputs), scale)

    def model_fn(features, labels, mode):
        return _linear(features, labels, mode, noise)

    kept, stock = _kept_and_stock(model_fn, _trained(model_fn, tmp_path))
    results = [kept.evaluate(_dataset_fn, name="kept") for _ in range(2)]
    assert kept._kept is not None and "stock" not in capsys.readouterr().err
    types = {op.type for op in kept._kept.graph.get_operations()}
    assert {"StatefulPartitionedCall", "StatelessWhile", "StatelessIf"} <= types, types
    for result in results:
        _same(result, stock.evaluate(_dataset_fn, name="stock"))


def test_random_ops_in_the_input_pipeline_restart_with_it_and_the_graph_stays_kept(tmp_path, capsys):
    """tf.data's random numbers (shuffle, a random map) are not the session's: each evaluation
    starts the pipeline again, kept as in stock."""

    def noisy_input_fn():
        x, y = _arrays()
        dataset = tf.data.Dataset.from_tensor_slices(({"x": x}, y)).shuffle(20)
        return dataset.map(lambda f, label: ({"x": f["x"] + tf.random.uniform([4])}, label)).batch(8)

    config = _trained(_linear_model_fn, tmp_path)
    kept, stock = _kept_and_stock(_linear_model_fn, config)
    results = [kept.evaluate(noisy_input_fn, name="kept") for _ in range(3)]
    expected = [stock.evaluate(noisy_input_fn, name="stock") for _ in range(3)]
    assert kept._kept is not None and "stock" not in capsys.readouterr().err
    for result, reference in zip(results, expected):
        _same(result, reference)
    without_noise = stock.evaluate(_dataset_fn, name="plain")
    assert without_noise["mean_output"] != expected[0]["mean_output"]  # The noise is there.


def test_inputs_that_cannot_restart_build_their_graph_once_and_take_the_stock_path(tmp_path, capsys):
    calls = {"input_fn": 0, "model_fn": 0}

    def input_fn():
        calls["input_fn"] += 1
        return _tensors_fn()

    def model_fn(features, labels, mode):
        calls["model_fn"] += 1
        return _linear(features, labels, mode)

    kept, stock = _kept_and_stock(model_fn, _trained(model_fn, tmp_path))
    calls.update(input_fn=0, model_fn=0)
    first = kept.evaluate(input_fn, name="kept")
    assert calls == {"input_fn": 1, "model_fn": 1}  # As stock: built once, run by stock's `_evaluate_run`.
    results = [first] + [kept.evaluate(input_fn, name="kept") for _ in range(2)]
    assert "returns no tf.data.Dataset" in capsys.readouterr().err and kept._kept is None and not kept._keep_eval_graph
    expected = [stock.evaluate(input_fn, name="stock") for _ in range(3)]
    for result, reference in zip(results, expected):
        _same(result, reference)
    assert results[0]["loss"] > 0 and results[2]["loss"] == results[0]["loss"]  # Not the zeros of an exhausted input.


def _offset_model_fn(features, labels, mode):
    """In EVAL, a scaffold whose local_init_op needs its local_init_feed_dict: an offset fed at
    each evaluation."""
    if mode != tf.estimator.ModeKeys.EVAL:
        return _linear(features, labels, mode)
    fed = tf.compat.v1.placeholder(tf.float32, [])
    offset = tf.compat.v1.Variable(fed, collections=[], name="offset")  # Initialized by the scaffold only.
    spec = _linear(features, labels, mode, lambda outputs: outputs + offset)
    # As the model_fn's own: stock adds the default local init op (the metrics') to it.
    scaffold = tf.compat.v1.train.Scaffold(local_init_op=offset.initializer, local_init_feed_dict={fed: 3.0})
    return spec._replace(scaffold=scaffold)


def test_the_scaffolds_local_init_feed_dict_is_fed(tmp_path):
    kept, stock = _kept_and_stock(_offset_model_fn, _trained(_offset_model_fn, tmp_path))
    results = [kept.evaluate(_dataset_fn, name="kept") for _ in range(2)]
    assert kept._kept is not None
    plain = stock.evaluate(_dataset_fn, name="plain")
    for result in results:
        _same(result, stock.evaluate(_dataset_fn, name="stock"))
    stock_linear = tf.estimator.Estimator(_linear_model_fn, model_dir=kept.model_dir)
    assert plain["mean_output"] == pytest.approx(stock_linear.evaluate(_dataset_fn)["mean_output"] + 3.0)


class SavesInEnd(tf.compat.v1.train.SessionRunHook):
    """Saves the weights with the session it is given, as a hook may (a model_fn's hook)."""

    def __init__(self, saver, path, sessions):
        self.saver, self.path, self.sessions = saver, path, sessions

    def after_create_session(self, session, coord):
        self.sessions.append(session)

    def before_run(self, run_context):
        self.sessions.append(run_context.session)

    def end(self, session):
        self.sessions.append(session)
        self.saved = self.saver.save(session, self.path)


def test_hooks_get_a_real_session_which_the_estimator_alone_closes(tmp_path):
    sessions = {"kept": [], "stock": []}  # The sessions each hook was given (Estimator copies its params).

    def model_fn(features, labels, mode, params):
        spec = _linear(features, labels, mode)
        saver = tf.compat.v1.train.Saver(tf.compat.v1.trainable_variables())
        path = str(tmp_path / params["name"] / "w")
        return spec._replace(evaluation_hooks=[SavesInEnd(saver, path, sessions[params["name"]])])

    def weights(name):
        return tf.train.load_variable(str(tmp_path / name / "w"), "w")

    config = _trained(model_fn, tmp_path, {"name": "kept"})
    kept = Estimator(model_fn, config=config, params={"name": "kept"})
    stock = Estimator(model_fn, config=config, params={"name": "stock"}, keep_eval_graph=False)
    for _ in range(2):  # saver.save(session, ...) in end(): a TypeError if the session were not a Session.
        _same(kept.evaluate(_dataset_fn, name="kept"), stock.evaluate(_dataset_fn, name="stock"))
        np.testing.assert_array_equal(weights("kept"), weights("stock"))
    assert len(sessions["kept"]) == len(sessions["stock"]) == 2 * (1 + 4 + 1)  # 3 batches and the last run.
    assert all(isinstance(session, tf.compat.v1.Session) for session in sessions["kept"])
    session = kept._kept.session
    assert set(sessions["kept"]) == {session} and not session._closed  # MonitoredSession did not close it.
    kept.close_eval_graph()
    assert session._closed and kept._kept is None


def test_a_model_fn_hook_with_a_closed_writer_sends_it_back_to_stock(tmp_path, capsys):
    """A SummarySaverHook made by the model_fn, FileWriterCache.clear() between evaluations: a
    kept hook would write to its closed writer and its summaries would be dropped."""

    def model_fn(features, labels, mode, params):
        spec = _linear(features, labels, mode)
        summary = tf.compat.v1.summary.scalar("probe", spec.loss)
        hook = tf.compat.v1.train.SummarySaverHook(save_steps=1, output_dir=params["dir"], summary_op=summary)
        return spec._replace(evaluation_hooks=[hook])

    def counts(estimator, directory):
        found = []
        for _ in range(3):
            estimator.evaluate(_dataset_fn, name=os.path.basename(directory))
            tf.compat.v1.summary.FileWriterCache.clear()  # Flushes and closes every cached writer.
            for path in glob.glob(os.path.join(directory, "events.out.tfevents.*")):  # A writer opened in the
                os.replace(path, f"{path}.{len(found)}")  # same second would write over the file: its name.
            found.append(len(event_tags(directory).get("probe", [])))
        return found

    config = _trained(model_fn, tmp_path, {"dir": str(tmp_path / "train_hook")})
    kept_dir, stock_dir = str(tmp_path / "kept"), str(tmp_path / "stock")
    kept = Estimator(model_fn, config=config, params={"dir": kept_dir})
    stock = Estimator(model_fn, config=config, params={"dir": stock_dir}, keep_eval_graph=False)
    kept_counts, stock_counts = counts(kept, kept_dir), counts(stock, stock_dir)
    assert "holds a closed FileWriter" in capsys.readouterr().err and kept._kept is None
    assert kept_counts == stock_counts and stock_counts[0] > 0 and stock_counts[2] > stock_counts[1]


def test_what_input_fn_reads_in_python_is_frozen_at_the_first_evaluation(tmp_path):
    """Not detectable, and documented: the Python side of input_fn runs once on a kept graph."""
    offset = {"value": 1.0}

    def input_fn():
        x, y = _arrays()
        return tf.data.Dataset.from_tensor_slices(({"x": x * 0 + offset["value"]}, y)).batch(8)

    config = _trained(_linear_model_fn, tmp_path)
    estimators = {
        "kept": Estimator(_linear_model_fn, config=config),
        "off": Estimator(_linear_model_fn, config=config, keep_eval_graph=False),
        "stock": tf.estimator.Estimator(_linear_model_fn, config=config),
    }
    means = {key: [] for key in estimators}
    for value in (1.0, 5.0):
        offset["value"] = value
        for key, estimator in estimators.items():
            means[key].append(float(estimator.evaluate(input_fn, name=key)["mean_output"]))
    assert means["off"] == means["stock"] and means["stock"][0] != means["stock"][1]
    assert means["kept"] == [means["stock"][0]] * 2  # Frozen at the first evaluation's value.


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_kept_evaluations_log_what_stock_ones_log(tmp_path):
    """Every INFO line of stock's evaluations, in order (times blanked), but the model_fn's
    "Calling model_fn." pair, which a kept graph logs at its first evaluation only."""
    config = _trained(_linear_model_fn, tmp_path)
    logger, handler = tf.get_logger(), Records()
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    logs = {}
    try:
        for key, estimator in zip(("kept", "stock"), _kept_and_stock(_linear_model_fn, config)):
            handler.messages = []
            for _ in range(2):
                estimator.evaluate(_dataset_fn, name="logs")
            logs[key] = [re.sub(r"\d{4}-\d\d-\d\d[T-]\d\d:\d\d:\d\d|\d+\.\d+s", "<time>", m) for m in handler.messages]
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    model_fn_lines = ["Calling model_fn.", "Done calling model_fn."]
    assert [m for m in logs["kept"] if m not in model_fn_lines] == [m for m in logs["stock"] if m not in model_fn_lines]
    assert logs["kept"].count("Calling model_fn.") == 1 and logs["stock"].count("Calling model_fn.") == 2
    for line in ("Starting evaluation at <time>", "Inference Time : <time>", "Finished evaluation at <time>"):
        assert logs["kept"].count(line) == 2, line


def test_the_version_and_private_symbols_are_checked_and_stock_runs_without_them(monkeypatch, tmp_path):
    from tensorflow_estimator.python.estimator import util as estimator_util

    from core import estimator as kept_module

    assert kept_module.UNSUPPORTED is None  # The pinned tensorflow-estimator, every symbol found.
    assert "tensorflow-estimator 2.14.0 (the kept EVAL graph needs 2.15.0)" in kept_module._unsupported("2.14.0")

    def no_metadata(name):
        raise importlib.metadata.PackageNotFoundError(name)

    with monkeypatch.context() as patch:
        patch.setattr(importlib.metadata, "version", no_metadata)
        assert "tensorflow-estimator of unknown version (the kept" in kept_module._unsupported()
    monkeypatch.delattr(estimator_util, "_DatasetInitializerHook")
    assert "lacks tensorflow_estimator.python.estimator.util._DatasetInitializerHook" in kept_module._unsupported()
    monkeypatch.setattr(kept_module, "UNSUPPORTED", kept_module._unsupported())
    # Unsupported, or keep_eval_graph=False: `evaluate` is tf.estimator.Estimator's own, untouched.
    for estimator in (Estimator(_linear_model_fn, str(tmp_path)), Estimator(_linear_model_fn, keep_eval_graph=False)):
        assert "_actual_eval" not in vars(estimator) and not estimator._keep_eval_graph
