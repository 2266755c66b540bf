"""The extension points, proven from outside the repository: a module in a temporary
directory defines a network, a task head, an augmentation, a metric and an evaluation
hook; a gin file loads it with gin's `import`; training, evaluation (`--worst_k` too) and
`tools/compare.py` use them all with no edit to the repository."""

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
from models.segmentation import Segmentation


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
def wrong_pixels(labels, predictions, ignore_label=255):
    """Counts the non-ignored pixels predicted wrong, exactly, over the whole evaluation."""
    valid = tf.not_equal(labels, ignore_label)
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


@gin.configurable
class FocalSegmentation(Segmentation):
    """A fork's head: segmentation with a focal cross-entropy (Lin et al. 2017), nothing else new."""

    name = "focal_segmentation"  # Its name in statistics files: tools/compare.py looks it up.

    def __init__(self, gamma=2.0, **kwargs):
        super().__init__(**kwargs)
        self.gamma = gamma

    def loss(self, logits, labels):
        valid = tf.not_equal(labels, self.ignore_label)
        safe = tf.where(valid, labels, tf.zeros_like(labels))
        cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe, logits=logits)
        focal = (1.0 - tf.exp(-cross_entropy)) ** self.gamma * cross_entropy
        return tf.compat.v1.losses.compute_weighted_loss(focal, weights=tf.cast(valid, tf.float32))


@gin.configurable
class Invert:
    """A fork's augmentation: inverts the image's colours with probability `probability`."""

    def __init__(self, probability=0.5, trace=gin.REQUIRED):
        self.probability, self.trace = probability, trace

    def __call__(self, example, seed):
        with open(self.trace, "a") as f:  # Python runs once, when the input pipeline is built.
            f.write("traced\\n")
        invert = tf.random.stateless_uniform([], seed) < self.probability
        return dict(example, image=tf.where(invert, 255 - example["image"], example["image"]))
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
            TASK = @FocalSegmentation()
            FocalSegmentation.num_classes = %NUM_CLASSES
            FocalSegmentation.class_names = %CLASS_NAMES
            FocalSegmentation.extra_metrics = [@wrong_pixels]
            wrong_pixels.ignore_label = %IGNORE_LABEL
            AUGMENTATIONS = [@flip_left_right(), @flip_up_down(), @brightness(), @Invert()]
            Invert.trace = '{root / "invert_traced.txt"}'
            EVAL_HOOKS = [@batch_counter()]
            batch_counter.path = '{root / "hook_runs.txt"}'
            """
        )
    )
    args = [f"--gin_file={config}", f"--model_dir={root / 'model'}"]
    args += [f"--gin_param={p}" for p in tiny_gin_params(tiny_dataset) if not p.startswith(("unet.", "AUGMENTATIONS"))]
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


@pytest.mark.slow
def test_the_forks_task_and_augmentation_train_rank_and_compare(fork):
    """The fork's task head trained (its loss, its name in the statistics), its augmentation
    in the input pipeline; `--worst_k` ranks by its per-example score; tools/compare.py finds
    the task by name once the run's gin file imports its module, and says so in one line without it."""
    root, args = fork
    assert (root / "invert_traced.txt").read_text().split() == ["traced"]  # Built once into the training input.
    kept = results.read_statistics(str(root / "model" / "eval" / "statistics-6.npz"))
    assert kept["task"] == "focal_segmentation"
    run_script("evaluate.py", *args, "--worst_k=2")
    worst = results.read_records(str(root / "model" / "eval_worst_2"))[-1]
    assert worst["num_examples"] == 2 and worst["global_step"] == 6
    a, b = f"{root / 'model'}@3", f"{root / 'model'}@6"
    refused = run_script("tools/compare.py", a, b, check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1] == (
        f"error: {root / 'model' / 'eval' / 'statistics-3.npz'} was written by the task 'focal_segmentation', "
        "which is not known here: pass the run's --gin_file, whose `import` loads the module that defines it"
    )
    gin_args = [arg for arg in args if arg.startswith(("--gin_file", "--gin_param"))]
    compared = run_script("tools/compare.py", a, b, *gin_args)
    assert "mean_iou" in compared.stdout and "examples whose mean_iou changed most" in compared.stdout
