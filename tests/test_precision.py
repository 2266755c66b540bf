"""Mixed precision from one gin macro (`PRECISION`, models/precision.py): every network that ships
computes in bfloat16 or float16 with float32 variables in training, evaluation and export, whatever
ran before it in the process; everything the task and the metrics read is float32; float16 scales
its loss and skips a step whose gradients overflow; two runs are bit-identical; `'auto'` follows
the GPUs or the CPU's flags and says so. The exact resume in bfloat16 (a run killed and resumed) is
in tests/test_robustness.py, the GPU op check in tests/test_gpu_ops.py."""

import gin
import numpy as np
import pytest
import tensorflow as tf

from common.errors import ConfigError
from models import build_model_fn, precision
from models.classification import Classification
from models.deeplab import DeepLab
from models.mobilenet import MobileNetV2Encoder
from models.regression import Regression
from models.segmentation import Segmentation
from models.unet import UNet
from tests.helpers import checkpoint_values

RNG = np.random.default_rng(0)  # Random images: what is compared is arithmetic, not learning.
IMAGES = RNG.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
MASKS = RNG.integers(0, 3, (6, 16, 16)).astype(np.int32)
LABELS = {  # Each task's labels for IMAGES.
    "segmentation": MASKS,
    "classification": RNG.integers(0, 3, 6),
    "regression": RNG.uniform(0, 1, (6, 3)).astype(np.float32),
}
TASKS = {"segmentation": Segmentation, "classification": Classification, "regression": Regression}
NETWORKS = {  # Every network that ships, small.
    "unet": lambda: UNet(4, 2),
    "deeplab": lambda: DeepLab(4, 4, atrous_rates=(2,), aspp_filters=4, block_dilations=(2,)),
    "mobilenet_v2": lambda: MobileNetV2Encoder(alpha=0.35, output_stride=16, head_filters=4),
}
CONVOLUTIONS = ("Conv2D", "DepthwiseConv2dNative", "Conv2DBackpropInput", "FusedBatchNormV3")
MODES = (tf.estimator.ModeKeys.TRAIN, tf.estimator.ModeKeys.EVAL, tf.estimator.ModeKeys.PREDICT)


def _input_fn(task="segmentation"):
    return tf.data.Dataset.from_tensor_slices(({"image": IMAGES, "index": np.arange(6)}, LABELS[task])).batch(3)


def _graph(mode, policy, network="unet", task="segmentation"):
    """`(graph, EstimatorSpec)` of the model_fn in `mode` under `policy`."""
    graph = tf.Graph()
    with graph.as_default():
        features, labels = tf.compat.v1.data.make_one_shot_iterator(_input_fn(task)).get_next()
        model_fn = build_model_fn(NETWORKS[network](), TASKS[task](3), precision=policy)
        spec = model_fn(features, labels, mode, None, tf.estimator.RunConfig(tf_random_seed=0))
    return graph, spec


def _computes_in(graph):
    """The dtypes the network's convolutions (and batch norms, by their input) compute in."""
    return {op.get_attr("T") for op in graph.get_operations() if op.type in CONVOLUTIONS}


@pytest.mark.parametrize("policy, compute", [("mixed_bfloat16", tf.bfloat16), ("mixed_float16", tf.float16)])
@pytest.mark.parametrize(
    "network, task", [("unet", "segmentation"), ("deeplab", "classification"), ("mobilenet_v2", "regression")]
)
def test_the_network_computes_low_and_everything_read_after_it_is_float32(policy, compute, network, task):
    """In every mode (training, evaluation, export's PREDICT graph), for every network, each with one
    of the tasks (every task is covered once)."""
    for mode in MODES:
        graph, spec = _graph(mode, policy, network, task)
        assert _computes_in(graph) == {compute}, mode
        kernels = [v for v in graph.get_collection("variables") if v.name.endswith("kernel:0")]
        assert kernels and {v.dtype.base_dtype for v in kernels} == {tf.float32}, mode  # The weights stay float32.
        if mode == tf.estimator.ModeKeys.TRAIN:
            assert spec.loss.dtype == tf.float32
        if mode == tf.estimator.ModeKeys.EVAL:
            assert {value.dtype for value in spec.predictions.values() if value.dtype.is_floating} == {tf.float32}
            floats = {value.dtype for value, _ in spec.eval_metric_ops.values() if value.dtype.is_floating}
            assert floats and floats <= {tf.float32, tf.float64}  # As in float32: no metric in the low precision.
        if mode == tf.estimator.ModeKeys.PREDICT:
            outputs = spec.export_outputs["serving_default"].outputs
            assert {value.dtype for value in outputs.values() if value.dtype.is_floating} == {tf.float32}


def test_mobilenet_follows_the_policy_of_each_build_in_one_process():
    """Its architecture is read once from Keras' model and cached: the cache must not carry the
    first build's dtype into the next (the layers' configs name one; a layer keeps it)."""
    from models import mobilenet

    mobilenet._backbone_config.cache_clear()
    for policy, compute in [("float32", tf.float32), ("mixed_bfloat16", tf.bfloat16), ("float32", tf.float32)]:
        graph, _ = _graph(tf.estimator.ModeKeys.PREDICT, policy, "mobilenet_v2", "segmentation")
        assert _computes_in(graph) == {compute}, policy


def test_float32_builds_the_graph_it_always_built():
    graph, _ = _graph(tf.estimator.ModeKeys.TRAIN, "float32")
    assert {op.get_attr("T") for op in graph.get_operations() if op.type == "Conv2D"} == {tf.float32}
    assert precision.wrap("network", "float32") == "network"  # Not even wrapped.


def _train(model_dir, policy, steps=3, network=None, hooks=()):
    """Trains to global step `steps`; the last checkpoint's weights."""
    model_fn = build_model_fn(network or UNet(4, 2), Segmentation(3), learning_rate=1e-2, precision=policy)
    config = tf.estimator.RunConfig(model_dir=str(model_dir), tf_random_seed=0, save_summary_steps=1)
    estimator = tf.estimator.Estimator(model_fn, config=config)
    estimator.train(lambda: _input_fn().repeat(), max_steps=steps, hooks=list(hooks))
    return _weights(model_dir)


def _weights(model_dir, step=None):
    """A checkpoint's values by name: the last one's, or step `step`'s (0: the initial weights,
    which Estimator saves before the first step)."""
    return checkpoint_values(model_dir if step is None else f"{model_dir}/model.ckpt-{step}")


def _kernels(weights):
    return [name for name in weights if name.endswith("kernel")]


def test_two_bfloat16_runs_give_bit_identical_weights_that_moved(tmp_path):
    first, second = _train(tmp_path / "a", "mixed_bfloat16"), _train(tmp_path / "b", "mixed_bfloat16")
    assert first.keys() == second.keys()
    for name in first:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)
    initial = _weights(tmp_path / "a", 0)
    assert all(not np.array_equal(first[name], initial[name]) for name in _kernels(first))  # Every layer trained.
    float32 = _train(tmp_path / "c", "float32")
    moved = [name for name in _kernels(float32) if not np.array_equal(first[name], float32[name])]
    assert moved  # bfloat16 arithmetic is not float32's: the same steps give other weights.


class _Overflowing:
    """A U-Net whose logits' gradient is 1e5 times what it is: the forward pass (and so the loss)
    unchanged, the gradient reaching the float16 layers past float16's 65504 at every step."""

    input_multiple = 4

    def __call__(self, images, num_outputs, training=False, seed=0):
        logits = tf.cast(UNet(4, 2)(images, num_outputs, training=training, seed=seed), tf.float32)
        return logits * 1e5 - tf.stop_gradient(logits * 1e5 - logits)


class _EachRun(tf.estimator.SessionRunHook):
    """After every training run: the global step, the loss scale and the first layer's kernel."""

    def __init__(self):
        self.runs = []

    def after_run(self, run_context, run_values):
        graph = run_context.session.graph
        variables = {v.name: v for v in graph.get_collection("variables")}
        kernel, scale = variables["down0_conv0/kernel:0"], variables["current_loss_scale:0"]
        self.runs.append(run_context.session.run([tf.compat.v1.train.get_global_step(), scale, kernel]))


def test_float16_scales_the_loss_dynamically_skips_an_overflowing_step_and_shows_the_scale(tmp_path):
    """tf.compat.v1.mixed_precision's dynamic loss scale: 2**15 to start, doubled after 2,000 finite
    steps, halved at every run whose gradients overflow; that run is skipped (the weights kept,
    the global step not counted: Estimator runs until that many steps were applied)."""
    from tests.helpers import event_tags

    weights = _train(tmp_path / "finite", "mixed_float16")
    assert (weights["current_loss_scale"], weights["good_steps"], weights["global_step"]) == (2.0**15, 3, 3)
    initial = _weights(tmp_path / "finite", 0)
    assert all(not np.array_equal(weights[name], initial[name]) for name in _kernels(weights))
    assert "loss_scale" in event_tags(str(tmp_path / "finite"))  # TensorBoard's scalar.

    each = _EachRun()
    weights = _train(tmp_path / "overflow", "mixed_float16", network=_Overflowing(), hooks=[each])
    before = (0, 2.0**15, _weights(tmp_path / "overflow", 0)["down0_conv0/kernel"])
    skipped = 0
    for step, scale, kernel in each.runs:
        if step == before[0]:  # Overflowed: skipped, and the scale halved.
            skipped += 1
            assert scale == before[1] / 2
            np.testing.assert_array_equal(kernel, before[2])
        else:
            assert step == before[0] + 1 and scale == before[1] and not np.array_equal(kernel, before[2])
        before = (step, scale, kernel)
    assert skipped >= 1 and len(each.runs) == skipped + 3  # Until the scale let the gradients through.
    assert weights["global_step"] == 3 and weights["good_steps"] == 3 and weights["current_loss_scale"] < 2.0**15


def test_auto_follows_the_gpus_or_the_cpu_says_so_and_a_typo_is_one_line(monkeypatch):
    from core import cli

    def machine(gpus=(), cpu_flags=()):  # What TensorFlow and /proc/cpuinfo would say.
        details = {f"GPU:{i}": gpu for i, gpu in enumerate(gpus)}
        monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: list(details))
        monkeypatch.setattr(tf.config.experimental, "get_device_details", lambda gpu: details[gpu])
        monkeypatch.setattr(precision, "cpu", lambda: ("a CPU", tuple(cpu_flags)))
        return precision.resolve("auto")

    assert machine(cpu_flags=["avx512_bf16"]) == machine(cpu_flags=["amx_bf16"]) == "mixed_bfloat16"
    assert machine() == "float32"  # An older x86 CPU, or an ARM one.
    assert machine([{"compute_capability": (8, 0)}, {"compute_capability": (9, 0)}]) == "mixed_bfloat16"
    assert machine([{"compute_capability": (7, 5)}], cpu_flags=["amx_bf16"]) == "float32"  # A T4 on a new host.
    assert machine([{"compute_capability": (8, 6)}, {"compute_capability": (7, 0)}]) == "float32"  # Each GPU must.
    assert machine([{}]) == "float32"  # No capability reported.
    with gin.unlock_config():
        gin.bind_parameter("%PRECISION", "auto")
    try:  # The devices line every entry point prints.
        machine(cpu_flags=["avx512_bf16"])
        assert cli._precision() == "precision mixed_bfloat16 (auto)"
        machine()
        assert cli._precision() == "precision float32 (auto)"
    finally:
        gin.clear_config()
    assert cli._precision() == "precision float32"  # No PRECISION bound: build_model_fn's default.
    with pytest.raises(ConfigError, match=r"^PRECISION = 'bfloat16': one of 'float32', 'mixed_bfloat16'"):
        precision.resolve("bfloat16")


def test_the_cpu_line_names_its_bfloat16_flags(tmp_path):
    """bench/train.py records it beside the figures: AMX and AVX512-BF16 give bfloat16 different factors."""

    def cpuinfo(name, text):
        path = tmp_path / name
        path.write_bytes(text.encode() if isinstance(text, str) else text)
        return str(path)

    def x86(model, flags):
        block = f"processor\t: {{}}\nmodel name\t: {model}\nflags\t\t: fpu {flags} sse\nvmx flags\t: amx_bf16\n\n"
        return block.format(0) + block.format(1)

    intel = cpuinfo("intel", x86("Intel(R) Xeon(R) Platinum 8480+", "avx512f amx_tile amx_bf16 avx512_bf16"))
    assert precision.cpu(intel) == ("Intel(R) Xeon(R) Platinum 8480+", ("amx_bf16", "avx512_bf16"))
    amd = cpuinfo("amd", x86("AMD EPYC 9B14", "avx512f avx512_bf16"))
    assert precision.cpu(amd) == ("AMD EPYC 9B14", ("avx512_bf16",))
    # Neither flag: a `vmx flags` line (virtualisation features) is not the CPU's flags.
    assert precision.cpu(cpuinfo("old", x86("Old Xeon", "avx2 avx512f"))) == ("Old Xeon", ())
    arm = cpuinfo("arm", "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd bf16\nCPU part\t: 0xd40\n")
    assert precision.cpu(arm) == ("", ())  # ARM's bf16 is not oneDNN's x86 path: 'auto' stays float32.
    assert precision.cpu(cpuinfo("bytes", b"model name\t: Caf\xe9 CPU\nflags\t: avx512_bf16\n")) == (
        "Caf\ufffd CPU",
        ("avx512_bf16",),
    )
    assert precision.cpu(str(tmp_path / "none")) == ("", ())
