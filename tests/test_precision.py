"""Mixed precision from one gin macro (`PRECISION`, models/precision.py): the network computes in
bfloat16 or float16 with float32 variables, everything the task and the metrics read is
float32, float16 scales its loss, two runs are bit-identical, and `'auto'` follows the CPU's
flags. The exact resume in bfloat16 is in tests/test_robustness.py, the GPU op check in
tests/test_gpu_ops.py."""

import numpy as np
import pytest
import tensorflow as tf

from common.errors import ConfigError
from models import build_model_fn, precision
from models.segmentation import Segmentation
from models.unet import UNet

RNG = np.random.default_rng(0)  # Random images: what is compared is arithmetic, not learning.
IMAGES = RNG.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
MASKS = RNG.integers(0, 3, (6, 16, 16)).astype(np.int32)


def _input_fn():
    return tf.data.Dataset.from_tensor_slices(({"image": IMAGES, "index": np.arange(6)}, MASKS)).batch(3)


def _graph(mode, policy):
    """`(graph, EstimatorSpec)` of the model_fn in `mode` under `policy`."""
    graph = tf.Graph()
    with graph.as_default():
        features, labels = tf.compat.v1.data.make_one_shot_iterator(_input_fn()).get_next()
        model_fn = build_model_fn(UNet(4, 2), Segmentation(3), precision=policy)
        spec = model_fn(features, labels, mode, None, tf.estimator.RunConfig(tf_random_seed=0))
    return graph, spec


@pytest.mark.parametrize("policy, compute", [("mixed_bfloat16", tf.bfloat16), ("mixed_float16", tf.float16)])
def test_the_network_computes_low_and_everything_read_after_it_is_float32(policy, compute):
    graph, spec = _graph(tf.estimator.ModeKeys.TRAIN, policy)
    convolutions = [op for op in graph.get_operations() if op.type == "Conv2D"]
    assert convolutions and {op.get_attr("T") for op in convolutions} == {compute}
    variables = graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES)
    kernels = [v for v in variables if v.name.endswith("kernel:0")]
    assert kernels and {v.dtype.base_dtype for v in kernels} == {tf.float32}  # The weights stay float32.
    assert spec.loss.dtype == tf.float32
    _, spec = _graph(tf.estimator.ModeKeys.EVAL, policy)
    assert spec.predictions["probabilities"].dtype == tf.float32
    floats = {value.dtype for value, _ in spec.eval_metric_ops.values() if value.dtype.is_floating}
    assert floats and floats <= {tf.float32, tf.float64}  # As in float32: no metric in the low precision.
    _, spec = _graph(tf.estimator.ModeKeys.PREDICT, policy)
    outputs = spec.export_outputs["serving_default"].outputs
    assert outputs["probabilities"].dtype == tf.float32


def test_float32_builds_the_graph_it_always_built():
    graph, _ = _graph(tf.estimator.ModeKeys.TRAIN, "float32")
    assert {op.get_attr("T") for op in graph.get_operations() if op.type == "Conv2D"} == {tf.float32}
    assert precision.wrap("network", "float32") == "network"  # Not even wrapped.


def _train(model_dir, policy, steps=3):
    model_fn = build_model_fn(UNet(4, 2), Segmentation(3), learning_rate=1e-2, precision=policy)
    config = tf.estimator.RunConfig(model_dir=str(model_dir), tf_random_seed=0, save_summary_steps=1)
    estimator = tf.estimator.Estimator(model_fn, config=config)
    estimator.train(lambda: _input_fn().repeat(), max_steps=steps)
    reader = tf.train.load_checkpoint(str(model_dir))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def test_two_bfloat16_runs_give_bit_identical_weights_that_moved(tmp_path):
    first, second = _train(tmp_path / "a", "mixed_bfloat16"), _train(tmp_path / "b", "mixed_bfloat16")
    assert first.keys() == second.keys()
    for name in first:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)
    float32 = _train(tmp_path / "c", "float32")
    moved = [name for name in float32 if name.endswith("kernel") and not np.array_equal(first[name], float32[name])]
    assert moved  # bfloat16 arithmetic is not float32's: the same steps give other weights.


def test_float16_scales_the_loss_dynamically_and_shows_the_scale(tmp_path):
    from tests.helpers import event_tags

    weights = _train(tmp_path, "mixed_float16")
    scales = [name for name in weights if "loss_scale" in name]
    assert scales, sorted(weights)  # The dynamic loss scale is a variable, saved with the checkpoint.
    assert "loss_scale" in event_tags(str(tmp_path))


def test_auto_follows_the_cpu_and_a_typo_is_one_line():
    with open("/proc/cpuinfo") as f:
        flags = set(next(line for line in f if line.startswith("flags")).split(":", 1)[1].split())
    expected = "mixed_bfloat16" if flags & {"amx_bf16", "avx512_bf16"} else "float32"
    assert precision.resolve("auto") == expected
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


def test_a_bfloat16_run_resumed_from_its_checkpoint_ends_as_the_uninterrupted_one(tiny_dataset, tmp_path):
    """The training stream restarts where the restored step left off (data/input.py), and bfloat16
    arithmetic is deterministic: 3 steps, a new process's worth of Estimator, 3 more, equal 6 at once.
    (The kill itself is tests/test_robustness.py's, in float32: the precision does not change it.)"""
    from data.input import make_input_fn
    from tests.conftest import TINY_SIZE

    def train(model_dir, steps):
        task = Segmentation(4)
        model_fn = build_model_fn(UNet(4, 2), task, learning_rate=1e-2, precision="mixed_bfloat16")
        input_fn = make_input_fn(str(tiny_dataset / "train-*.tfrecord"), 4, TINY_SIZE, TINY_SIZE, task,
                                 training=True, seed=3)  # fmt: skip
        config = tf.estimator.RunConfig(model_dir=str(model_dir), tf_random_seed=0, save_checkpoints_steps=3)
        tf.estimator.Estimator(model_fn, config=config).train(input_fn, max_steps=steps)
        reader = tf.train.load_checkpoint(str(model_dir))
        return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}

    whole = train(tmp_path / "whole", 6)
    train(tmp_path / "resumed", 3)
    resumed = train(tmp_path / "resumed", 6)
    assert resumed["global_step"] == 6
    for name in whole:
        np.testing.assert_array_equal(resumed[name], whole[name], err_msg=name)
