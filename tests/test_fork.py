"""The extension points, proven from outside the repository: a module in a temporary
directory defines a network, a metric and an evaluation hook; a gin file loads it with
gin's `import`; training and evaluation use all three with no edit to the repository."""

import json
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from core import results
from tests.conftest import TINY_VAL, tiny_gin_params
from tests.helpers import run_script

MODULE = '''
"""A fork's own pieces, outside the template."""

import gin
import tensorflow as tf

from metrics.streaming import streaming_sums


@gin.configurable
class TinyNet:
    """One conv, a batch norm and a 1x1 head: the network interface, nothing more."""

    def __init__(self, filters=4):
        self.filters = filters

    def __call__(self, images, num_outputs, training=False, seed=0):
        init = tf.keras.initializers.GlorotUniform
        conv = tf.keras.layers.Conv2D(self.filters, 3, padding="same", kernel_initializer=init(seed), name="tiny_conv")
        x = conv(images)
        x = tf.keras.layers.BatchNormalization(name="tiny_norm")(x, training=training)
        x = tf.nn.relu(x)
        return tf.keras.layers.Conv2D(num_outputs, 1, kernel_initializer=init(seed + 1), name="tiny_logits")(x)


@gin.configurable
def wrong_pixels(labels, predictions):
    """Counts the non-ignored pixels predicted wrong, exactly, over the whole evaluation."""
    valid = tf.not_equal(labels, 255)
    wrong = tf.logical_and(valid, tf.not_equal(labels, predictions["classes"]))
    sums, update = streaming_sums({"wrong": wrong}, "wrong_pixels")
    return {"wrong_pixels": (sums["wrong"], update)}


class BatchCounter(tf.compat.v1.train.SessionRunHook):
    def __init__(self, path):
        self.path = path

    def begin(self):
        self.batches = 0

    def after_run(self, run_context, run_values):
        self.batches += 1

    def end(self, session):
        with open(self.path, "a") as f:
            f.write(f"{self.batches}\\n")


@gin.configurable
def batch_counter(path=gin.REQUIRED):
    return lambda tensors: BatchCounter(path)
'''


@pytest.fixture(scope="module")
def fork(tiny_dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("fork")
    (root / "my_fork.py").write_text(MODULE)
    config = root / "mine.gin"
    config.write_text(
        textwrap.dedent(
            f"""\
            import my_fork
            include 'configs/synthetic.gin'

            NETWORK = @TinyNet()
            segmentation.extra_metrics = [@wrong_pixels]
            EVAL_HOOKS = [@batch_counter()]
            batch_counter.path = '{root / "hook_runs.txt"}'
            """
        )
    )
    args = [f"--gin_file={config}", f"--model_dir={root / 'model'}"]
    args += [f"--gin_param={p}" for p in tiny_gin_params(tiny_dataset) if not p.startswith("unet.")]
    run_script("train.py", *args)
    return root, args


@pytest.mark.slow
def test_training_uses_the_forks_network_metric_and_hook(fork):
    root, _ = fork
    variables = dict(tf.train.list_variables(str(root / "model")))
    assert "tiny_conv/kernel" in variables and not any(name.startswith("down0") for name in variables)
    # The fork's network has batch norm and no idea of UPDATE_OPS: the template ran its updates.
    moving_mean = tf.train.load_variable(str(root / "model"), "tiny_norm/moving_mean")
    assert np.any(moving_mean != 0)
    for record in results.read_records(str(root / "model" / "eval")):
        confusion = np.array(record["confusion_matrix"])
        assert record["metrics"]["wrong_pixels"] == confusion.sum() - np.trace(confusion)  # Independent count.
    # One line per evaluation (steps 3 and 6), each the number of eval batches of 3.
    batches = -(-TINY_VAL // 3)
    assert (root / "hook_runs.txt").read_text().split() == [str(batches)] * 2


@pytest.mark.slow
def test_evaluate_py_runs_the_same_metric_and_hook(fork):
    root, args = fork
    run_script("evaluate.py", *args, "--subset=1,2", "--eval_name=pair")
    record = results.read_records(str(root / "model" / "eval_pair"))[-1]
    confusion = np.array(record["confusion_matrix"])
    assert record["num_examples"] == 2
    assert record["metrics"]["wrong_pixels"] == confusion.sum() - np.trace(confusion)
    assert (root / "hook_runs.txt").read_text().split()[-1] == "1"  # Two examples: one batch.
    assert json.loads((root / "model" / "eval_pair" / "results.jsonl").read_text().splitlines()[-1])
