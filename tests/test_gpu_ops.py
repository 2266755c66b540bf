"""No op that TensorFlow 2.15 refuses on a GPU under op determinism, checked on the CPU.

The TRAIN, EVAL (train_and_evaluate's and the separate evaluator's) and PREDICT (the
SavedModel's) graphs of every gin file in configs/, and evaluate.py's (a subset, two
scales, mirrored) once per network and task, are built as Estimator builds them and
searched with
`common.determinism.gpu_refusals`. Its list (`REFUSED_ON_GPU`) is TensorFlow 2.15.1's own:
the `UnimplementedError` messages compiled into its kernels, each with the source that
raises it (tensorflow/core/kernels/bincount_op.cc for Bincount and DenseBincount,
scatter_op.cc, fused_batch_norm_op.cc, image/resize_nearest_neighbor_op.cc, ...), and the
op determinism notes of `tf.config.experimental.enable_op_determinism`
(tensorflow/python/framework/config.py). A fork's new gin file is checked too.
"""

import glob
import os

import gin
import numpy as np
import pytest
import tensorflow as tf

from common import determinism
from common.errors import ConfigError
from core import configurables
from data import synthetic, writer
from hooks.gpu_check import GpuOpCheck
from models import serving
from tests.conftest import REPO_ROOT

CONFIGS = sorted(
    os.path.relpath(path, REPO_ROOT)
    for path in glob.glob(os.path.join(REPO_ROOT, "configs", "*.gin"))
    if os.path.basename(path) != "base.gin"
)
VAL_SIZES = [(32, 32), (24, 40), (32, 32)]  # Different sizes: the one-image-at-a-time path.
THIS_FILE = os.path.relpath(__file__, REPO_ROOT)


@pytest.fixture(scope="module", autouse=True)
def op_determinism():
    was = determinism.enabled()
    determinism.configure(True)  # Before any graph: the Python API picks deterministic paths.
    yield
    determinism.configure(was)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """A tiny train and val split for each task: `{task: directory}`."""
    roots = {}
    for task in synthetic.TASKS:
        root = roots[task] = tmp_path_factory.mktemp(f"gpu_ops_{task}")
        train = [synthetic.example(task, 1, "train", i, 32, 32) for i in range(2)]
        val = [synthetic.example(task, 1, "val", i, h, w) for i, (h, w) in enumerate(VAL_SIZES)]
        for split, examples in (("train", train), ("val", val)):
            writer.write_shards(iter(examples), len(examples), str(root / split), 1, progress=False)
    return roots


def _parse(config, root=None, extra=()):
    params = ["IMAGE_HEIGHT = 32", "IMAGE_WIDTH = 32", "SUMMARY_INDICES = [0, 1]", *extra]
    if root is not None:
        params += [f"TRAIN_FILES = '{root}/train-*.tfrecord'", f"VAL_FILES = '{root}/val-*.tfrecord'"]
    gin.clear_config()
    configurables.parse_gin([os.path.join(REPO_ROOT, config)], params)


def _input_fn(scope, **kwargs):
    with gin.config_scope(scope):
        return configurables.make_input_fn(**kwargs)


def _refusals(model_fn, mode, input_fn=None):
    """Builds one mode's graph as Estimator does (input_fn or the serving receiver, then the
    model_fn, then its hooks' `begin`) and returns `gpu_refusals` of it."""
    estimator = tf.estimator.Estimator(model_fn, config=tf.estimator.RunConfig(tf_random_seed=42))
    with tf.Graph().as_default() as graph:
        tf.compat.v1.set_random_seed(42)
        tf.compat.v1.train.get_or_create_global_step()
        if input_fn is None:
            receiver = serving.serving_input_receiver_fn()()
            features, labels = receiver.features, None
        else:
            features, labels, _ = estimator._get_features_and_labels_from_input_fn(input_fn, mode)  # noqa: SLF001
        spec = estimator._call_model_fn(features, labels, mode, estimator.config)  # noqa: SLF001
        hooks = {
            tf.estimator.ModeKeys.TRAIN: spec.training_hooks,
            tf.estimator.ModeKeys.EVAL: spec.evaluation_hooks,
            tf.estimator.ModeKeys.PREDICT: spec.prediction_hooks,
        }[mode]
        assert any(isinstance(hook, GpuOpCheck) for hook in hooks)  # Every mode checks itself.
        for hook in hooks:
            if not isinstance(hook, GpuOpCheck):
                hook.begin()
        return determinism.gpu_refusals(graph)


def _graphs(config, datasets, extra=(), graphs=("TRAIN", "EVAL", "PREDICT", "evaluate.py")):
    """`{graph name: refusals}` for the graphs a run of `config` builds (those named in `graphs`)."""
    _parse(config)
    task = configurables.build_model_fn().task.name
    hooks = ["EVAL_HOOKS = [@per_class_logging()]"] if task == "segmentation" else []
    _parse(config, datasets[task], hooks + list(extra))
    build = {
        "TRAIN": lambda: _refusals(configurables.build_model_fn(), tf.estimator.ModeKeys.TRAIN, _input_fn("train")),
        "EVAL": lambda: _refusals(configurables.build_model_fn(), tf.estimator.ModeKeys.EVAL, _input_fn("eval")),
        "PREDICT": lambda: _refusals(configurables.build_model_fn(), tf.estimator.ModeKeys.PREDICT),
        "evaluate.py": lambda: _refusals(
            configurables.build_model_fn(summary_indices=[0, 2], eval_scales=[0.5, 1.0], add_flipped_images=True),
            tf.estimator.ModeKeys.EVAL,
            _input_fn("eval", subset=[0, 2]),
        ),
    }
    found = {name: build[name]() for name in graphs}
    gin.clear_config()
    return found


_VIEWS_CHECKED = set()  # (network, task) pairs whose evaluate.py graph was built already.


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS)
def test_shipped_configs_have_no_op_a_gpu_refuses(config, datasets):
    # evaluate.py's graph adds views (scales, flips) of the network to the task's EVAL
    # graph: built once per network and task, by the first config with that pair.
    _parse(config)
    pair = tuple(
        type(gin.query_parameter(f"{m}/macro.value").scoped_configurable_fn()).__name__ for m in ("NETWORK", "TASK")
    )
    graphs = ["TRAIN", "EVAL", "PREDICT"] + ([] if pair in _VIEWS_CHECKED else ["evaluate.py"])
    _VIEWS_CHECKED.add(pair)
    found = _graphs(config, datasets, graphs=graphs)
    assert set(found) == set(graphs)
    problems = [f"{graph}: {refusal}" for graph, refusals in found.items() for refusal in refusals]
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_the_network_no_gin_file_picks_trains_without_an_op_a_gpu_refuses(datasets):
    """MobileNetV2 (NETWORK = @mobilenet_v2()): its TRAIN graph, where the gradients are; the
    other modes run the same layers forward, as the U-Net and DeepLab graphs above do."""
    found = _graphs("configs/synthetic.gin", datasets, ["NETWORK = @mobilenet_v2()"], graphs=["TRAIN"])
    problems = [f"{graph}: {refusal}" for graph, refusals in found.items() for refusal in refusals]
    assert not problems, "\n".join(problems)


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_graphs_have_no_op_a_gpu_refuses(datasets, policy):
    """PRECISION's graphs: the casts, the low-precision kernels and (float16) the loss-scaling
    optimizer's ops, in every mode."""
    found = _graphs("configs/synthetic.gin", datasets, [f"PRECISION = {policy!r}"], graphs=["TRAIN", "EVAL", "PREDICT"])
    problems = [f"{graph}: {refusal}" for graph, refusals in found.items() for refusal in refusals]
    assert set(found) == {"TRAIN", "EVAL", "PREDICT"} and not problems, "\n".join(problems)


def bincount_hook():
    """A fork's evaluation hook builder that counts predicted classes with tf.math.bincount."""

    def build(tensors):
        counts = tf.math.bincount(tf.cast(tensors["predictions"]["classes"], tf.int32), minlength=4)
        return tf.estimator.LoggingTensorHook({"class_counts": counts}, every_n_iter=1)

    return build


gin.external_configurable(bincount_hook, "bincount_hook")
BINCOUNT_LINE = bincount_hook.__code__.co_firstlineno + 4  # The tf.math.bincount line above.


def test_a_bincount_added_to_the_evaluation_graph_is_named_with_its_file(datasets):
    found = _graphs("configs/synthetic.gin", datasets, ["EVAL_HOOKS = [@bincount_hook()]"], ["EVAL", "evaluate.py"])
    for graph in ("EVAL", "evaluate.py"):
        (refusal,) = found[graph]
        assert refusal.op_type == "DenseBincount"  # What tf.math.bincount runs in TF 2.15.
        assert refusal.where == f"{THIS_FILE}:{BINCOUNT_LINE}"
        assert refusal.source == "tensorflow/core/kernels/bincount_op.cc"
        message = str(refusal)
        assert message.startswith(f"{THIS_FILE}:{BINCOUNT_LINE}: DenseBincount") and "on_host()" in message


def _graph_refusals(build):
    with tf.Graph().as_default() as graph:
        tf.compat.v1.set_random_seed(1)  # tf.data's iterator under op determinism.
        build()
        return determinism.gpu_refusals(graph)


def test_function_bodies_are_searched_and_host_placements_and_tf_data_are_not_refused():
    ids = np.array([[0, 1, 1], [2, 2, 2]], np.int32)

    def counts(row):
        return tf.math.bincount(row, minlength=3, maxlength=3)

    def in_map_fn():
        tf.map_fn(counts, tf.constant(ids))

    def in_map_fn_on_host():
        with determinism.on_host():
            tf.map_fn(counts, tf.constant(ids))

    def in_tf_data():
        dataset = tf.data.Dataset.from_tensor_slices(ids).map(counts)
        tf.compat.v1.data.make_one_shot_iterator(dataset).get_next()

    def ref_variable_scatter():
        variable = tf.compat.v1.Variable([0.0, 0.0], use_resource=False)
        tf.compat.v1.scatter_add(variable, [0, 0], [1.0, 2.0])

    def resource_variable_scatter():
        variable = tf.compat.v1.Variable([0.0, 0.0], use_resource=True)
        tf.compat.v1.scatter_add(variable, [0, 0], [1.0, 2.0])

    def frozen_batch_norm_gradient():
        x = tf.ones([2, 4, 4, 3])
        scale = tf.ones([3])
        zeros, ones = tf.zeros([3]), tf.ones([3])
        y, *_ = tf.compat.v1.nn.fused_batch_norm(x, scale, zeros, zeros, ones, is_training=False)
        tf.gradients(y, [x, scale])

    def cross_entropy_through_the_python_api():
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=[1], logits=[[0.0, 1.0]])
        tf.nn.softmax_cross_entropy_with_logits(labels=[[0.0, 1.0]], logits=[[0.0, 1.0]])

    (found,) = _graph_refusals(in_map_fn)
    assert found.op_type == "DenseBincount" and found.where.startswith(f"{THIS_FILE}:")
    assert _graph_refusals(in_map_fn_on_host) == []
    assert _graph_refusals(in_tf_data) == []
    assert [r.op_type for r in _graph_refusals(ref_variable_scatter)] == ["ScatterAdd"]
    assert _graph_refusals(resource_variable_scatter) == []
    assert [r.op_type for r in _graph_refusals(frozen_batch_norm_gradient)] == ["FusedBatchNormGradV3"]
    assert _graph_refusals(cross_entropy_through_the_python_api) == []  # Determinism on: deterministic paths.


def test_the_histogram_counts_on_the_host_as_numpy_does():
    ids = np.array([0, 3, 3, 7, 9, 2, 3], np.int32)  # 7 and 9 are past the end: not counted.
    weights = np.linspace(0.1, 0.7, 7)
    with tf.Graph().as_default() as graph:
        from metrics.streaming import histogram

        counts = histogram(tf.constant(ids), 5)
        weighted = histogram(tf.constant(ids), 5, weights=tf.constant(weights), dtype=tf.float64)
        assert all("CPU" in op.device for op in graph.get_operations() if op.type == "Bincount")
        assert determinism.gpu_refusals(graph) == []
        with tf.compat.v1.Session() as session:
            counts, weighted = session.run([counts, weighted])
    kept = ids < 5
    np.testing.assert_array_equal(counts, np.bincount(ids[kept], minlength=5))
    np.testing.assert_allclose(weighted, np.bincount(ids[kept], weights=weights[kept], minlength=5))


def test_the_check_hook_warns_on_a_cpu_and_stops_a_gpu_run_before_its_first_step(monkeypatch, capsys):
    with tf.Graph().as_default():
        tf.math.bincount(tf.constant([1, 2]))
        GpuOpCheck().begin()
        assert "warning: on a GPU this would fail: " in capsys.readouterr().err
        monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: ["GPU:0"] if kind == "GPU" else [])
        with pytest.raises(ConfigError, match=r"test_gpu_ops\.py:\d+: DenseBincount"):
            GpuOpCheck().begin()
        determinism.configure(False)  # Off: nothing is refused, nothing checked.
        try:
            GpuOpCheck().begin()
        finally:
            determinism.configure(True)


def test_devices_are_reported_in_one_line(monkeypatch):
    assert determinism.describe() == "devices: no GPU, running on the CPU; op determinism on"

    class Device:
        def __init__(self, name):
            self.name = name

    gpus = [Device("/physical_device:GPU:0"), Device("/physical_device:GPU:1")]
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: gpus if kind == "GPU" else [])
    assert determinism.describe() == "devices: 2 GPU(s) (GPU:0, GPU:1); op determinism on"


def test_the_gin_switch_turns_op_determinism_off_and_on():
    try:
        for value in (False, True):
            _parse("configs/synthetic.gin", extra=[f"DETERMINISTIC = {value}"])
            configurables.op_determinism()
            assert determinism.enabled() is value
            assert determinism.describe().endswith("op determinism on" if value else "off (DETERMINISTIC = False)")
    finally:
        gin.clear_config()
        determinism.configure(True)
