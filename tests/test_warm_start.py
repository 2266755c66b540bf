"""Fine-tuning with WARM_START_FROM: from a template checkpoint trained with other classes
(the head skipped, everything else restored), from a Keras MobileNetV2 .h5 weights file
(every backbone variable restored, batch-norm statistics included), and the one-line
errors that leave the model directory as it was found."""

import io
import os

import gin
import numpy as np
import pytest
import tensorflow as tf

from common.errors import ConfigError
from core import configurables
from tests.conftest import tiny_gin_params

GIN_FILE = "configs/synthetic.gin"
HEAD = ("logits/kernel", "logits/bias")
FIVE_CLASSES = "['background', 'circle', 'square', 'triangle', 'star']"


def _train(model_dir, dataset, **params):
    """train.py's root, in-process, on the tiny dataset with no SavedModel exports; returns its output."""
    bindings = {"export.image_size": "None", **params}
    gin.clear_config()
    try:
        configurables.parse_gin([GIN_FILE], tiny_gin_params(dataset, **bindings))
        stream = io.StringIO()
        configurables.train_and_evaluate(model_dir=str(model_dir), stream=stream)
        return stream.getvalue()
    finally:
        gin.clear_config()


def _checkpoint(model_dir, step):
    return tf.train.load_checkpoint(os.path.join(str(model_dir), f"model.ckpt-{step}"))


def _is_model_variable(name):
    return name != "global_step" and "/Adam" not in name and not name.startswith("beta")


def _listing(directory):
    """Every file under `directory` but the trainer lock (an empty lock file stays, by design: test_robustness)."""
    return sorted(
        os.path.relpath(os.path.join(root, name), directory)
        for root, _, names in os.walk(directory)
        for name in names
        if name != ".trainer.lock"
    )


@pytest.fixture(scope="module")
def source(tiny_dataset, tmp_path_factory):
    """A template model directory trained 2 steps on the 4-class tiny set."""
    model_dir = tmp_path_factory.mktemp("source") / "model"
    _train(model_dir, tiny_dataset, TRAIN_STEPS=2, EVAL_EVERY_STEPS=2)
    return model_dir


def _fine_tune(model_dir, dataset, source, steps):
    """Trains `steps` steps on 5 classes, warm-started from `source`; returns the output."""
    return _train(
        model_dir,
        dataset,
        NUM_CLASSES=5,
        CLASS_NAMES=FIVE_CLASSES,
        WARM_START_FROM=repr(str(source)),
        TRAIN_STEPS=steps,
        EVAL_EVERY_STEPS=1,
    )


@pytest.mark.slow
def test_template_checkpoint_restores_all_but_the_head(source, tiny_dataset, tmp_path):
    model_dir = tmp_path / "fine_tuned"
    output = _fine_tune(model_dir, tiny_dataset, source, steps=1)
    reader = tf.train.load_checkpoint(str(source))
    names = [name for name in reader.get_variable_to_shape_map() if _is_model_variable(name)]
    step_0 = _checkpoint(model_dir, 0)
    body = [name for name in names if name not in HEAD]
    assert len(body) > 20 and any(name.endswith("moving_variance") for name in body)
    for name in body:  # Trainable weights and batch-norm statistics alike, exactly.
        np.testing.assert_array_equal(step_0.get_tensor(name), reader.get_tensor(name), err_msg=name)
    # The head has the new shape and its own initial values; the optimizer starts afresh.
    assert step_0.get_variable_to_shape_map()["logits/kernel"] == [1, 1, 4, 5]
    assert not np.any(step_0.get_tensor("logits/bias")) and np.any(reader.get_tensor("logits/bias"))
    assert not np.any(step_0.get_tensor("down0_conv0/kernel/Adam"))
    assert step_0.get_tensor("global_step") == 0
    line = next(line for line in output.splitlines() if line.startswith("warm start:"))
    assert f"warm start: {len(body)} variables from {tf.train.latest_checkpoint(str(source))}" in line
    assert "skipped by WARM_START_SKIP: logits/kernel, logits/bias; not in it: none" in line

    # Resuming (the directory has checkpoints now) continues from its own, passing the resume check.
    output = _fine_tune(model_dir, tiny_dataset, source, steps=2)
    assert f"warm start: ignored, {model_dir} resumes from its own" in output
    assert tf.train.latest_checkpoint(str(model_dir)).endswith("model.ckpt-2")


def _mobilenet_weights(path, alpha=0.35):
    """A MobileNetV2 weights file as `save_weights` writes it, every value random (seeded), as Keras names them."""
    model = tf.keras.applications.MobileNetV2(weights=None, alpha=alpha, include_top=False, input_shape=(None, None, 3))
    rng = np.random.default_rng(7)
    # Not Keras' initial values (gamma 1, moving mean 0, ...), so equality means restored.
    model.set_weights(
        [
            rng.uniform(0.5, 1.5, w.shape) if "moving_variance" in w.name else rng.normal(0, 0.1, w.shape)
            for w in model.weights
        ]
    )
    model.save_weights(str(path))
    return {w.name.split(":")[0]: w.numpy() for w in model.weights}


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("keras") / "mobilenet_v2_0.35_no_top.h5"
    return path, _mobilenet_weights(path)


# Output stride 8 (cut at block_6_expand_relu) keeps the graph small; 16 and 32 only cut later.
MOBILENET = {"NETWORK": "@mobilenet_v2()", "mobilenet_v2.alpha": "0.35", "mobilenet_v2.output_stride": "8"}


@pytest.mark.slow
def test_keras_h5_file_restores_every_backbone_variable(weights_file, tiny_dataset, tmp_path):
    path, weights = weights_file
    model_dir = tmp_path / "mobilenet"
    output = _train(
        model_dir, tiny_dataset, WARM_START_FROM=repr(str(path)), TRAIN_STEPS=1, EVAL_EVERY_STEPS=1, **MOBILENET
    )
    step_0 = _checkpoint(model_dir, 0)
    names = [name for name in step_0.get_variable_to_shape_map() if _is_model_variable(name)]
    head = [name for name in names if name.split("/")[0] in ("head_conv", "head_norm", "logits")]
    backbone = [name for name in names if name not in head]
    # Conv1, expanded_conv, blocks 1-5 and block 6's expansion: 95 of the file's 260 weights.
    assert len(backbone) == 95 and len(head) == 7
    for name in backbone:
        np.testing.assert_array_equal(step_0.get_tensor(name), weights[name], err_msg=name)
    assert "block_6_expand_BN/moving_variance" in backbone and "block_6_depthwise/depthwise_kernel" not in names
    line = next(line for line in output.splitlines() if line.startswith("warm start:"))
    assert f"warm start: 95 variables from {path} (converted to {model_dir}/warm_start/model.ckpt" in line
    assert "165 of its 260 weights unused" in line and "not in it: head_conv/kernel" in line
    # One training step moved the weights; the step-1 checkpoint is not the file any more.
    assert not np.array_equal(_checkpoint(model_dir, 1).get_tensor("Conv1/kernel"), weights["Conv1/kernel"])


@pytest.mark.slow
@pytest.mark.parametrize("existing", [False, True])
def test_bad_source_is_one_line_and_leaves_the_model_dir_as_found(
    existing, source, weights_file, tiny_dataset, tmp_path
):
    model_dir = tmp_path / "model"
    if existing:
        model_dir.mkdir()
        (model_dir / "notes.txt").write_text("mine")
    before = _listing(model_dir) if existing else None
    missing = tmp_path / "no_such_run"
    cases = [
        (
            {"WARM_START_FROM": repr(str(missing))},
            f"WARM_START_FROM: no such model directory, checkpoint or .h5 file: {missing}",
        ),
        # A .h5 file with no variable of this network (a U-Net) in it.
        ({"WARM_START_FROM": repr(str(weights_file[0]))}, f"{weights_file[0]}: none of this model's"),
        # Another width: the first conv's kernel differs, named with both shapes.
        (
            {"WARM_START_FROM": repr(str(source)), "unet.base_filters": "8"},
            f"{tf.train.latest_checkpoint(str(source))}: down0_conv0/kernel is [3, 3, 3, 4] there and [3, 3, 3, 8]",
        ),
    ]
    for params, message in cases:
        with pytest.raises(ConfigError) as error:
            _train(model_dir, tiny_dataset, TRAIN_STEPS=1, EVAL_EVERY_STEPS=1, **params)
        assert message in str(error.value).splitlines()[0]  # What `error: ...` shows (gin adds context below).
        assert (_listing(model_dir) == before) if existing else not model_dir.exists()
