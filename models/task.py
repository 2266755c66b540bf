"""`Task`: what the model predicts and how it is judged. Every member the rest of the code reads.

`build_model_fn(network, task)` is task-agnostic: the network maps images to
`num_outputs` channels, and the task does everything else: it reads its labels from the
records, turns the network's outputs into logits, predictions and a loss, streams its
metrics, ranks examples, draws panels, and keeps each example's sufficient statistics
for the bootstrap intervals and paired comparisons. This base class declares every
member that code outside a task reads, each marked **required** (abstract) or with the
default it has; three tasks ship, one module each: `models/segmentation.py`,
`models/classification.py`, `models/regression.py`.

A fork's own head is one more subclass, in the template or in its own module (gin's
`import my_fork`), bound by its registered name, `TASK = @MyTask()` for a class
decorated `@gin.configurable` (docs/fork.md). `tests/test_fork.py`
trains, evaluates (`--worst_k`) and compares (`tools/compare.py`) one defined outside
the repository.

**The constructor contract.** Gin builds a task with keyword arguments (its own, plus
`num_classes` and `class_names` bound from the dataset macros in configs/base.gin). A
results reader rebuilds one from a `statistics-*.npz` file, which records the task's
`name` and `class_names`, with `Task.from_class_names(class_names)`; the default calls
`cls(num_classes=len(class_names), class_names=class_names)`, a task whose constructor
differs overrides it (`Regression` does). Tasks register themselves by `name` when their
class is defined (`registered()`): a data file names a task, it never imports code.

Reading order: `train.py` -> `core/experiment.py` -> `models/model_fn.py` -> this file
-> next, `data/input.py` (the input_fn, which calls `label_features` and `decode_label`).
"""

import abc

import numpy as np
import tensorflow as tf

from common.constants import IGNORE_LABEL
from common.errors import ConfigError
from metrics import example_count

_REGISTRY = {}


def registered(name: str):
    """The task class registered under `name`, or None (tasks register when defined)."""
    return _REGISTRY.get(name)


def class_names_for(names, count: int, what: str = "class") -> list:
    """`names` as a list of `count` names (default: the ids), or a ConfigError saying they differ."""
    names = list(names) if names else [str(i) for i in range(count)]
    if len(names) != count:
        raise ConfigError(f"{len(names)} {what} names {names} for {count} {what}s: CLASS_NAMES and NUM_CLASSES differ")
    return names


def spatial_mean(outputs):
    """[B, h, w, K] -> [B, K]: a per-image value from a per-position one.

    Linear, so averaging logits over positions equals a linear head on averaged
    features: any network that makes a feature map serves every task.
    """
    return tf.reduce_mean(outputs, axis=[1, 2])


class Task(abc.ABC):
    """The contract between a task and the rest of the template (see the module docstring).

    Attributes every task has (class attributes, or set by its constructor):
      name: its registry name, written into statistics files; also in messages.
        Required: a subclass sets its own.
      num_outputs: channels the network must output (`models/inference.py`). Required.
      class_names: the rows of the `per_class` table of a results record and of the
        confusion matrix (target names for regression). Required.
      dense_labels: True when the label is per pixel (a mask): the input pipeline moves
        it with the image under flips and crops, pads it with `ignore_label`, and
        evaluation compares it at each image's own size. Default False.
      label_dtype: the dtype labels are cast to in the input pipeline. Default int32.
      ignore_label: the label value left out of the loss and every metric, and the
        value masks are padded with (dense tasks); unused by the others. Default 255.
      headline: the metric printed at the end of a run and, unless BEST_METRIC says
        otherwise, the one that picks the best checkpoint. Required.
      lower_is_better: metrics where lower is better (`higher_is_better`). Default
        `{"loss"}`.
      per_class_keys: the per-class metrics (`<key>/<class name>` in the evaluation
        result) gathered into the `per_class` table, in column order. Default none.
      per_example_score, worst_is_lowest: which `per_example` value ranks the examples
        for `--worst_k`, and whether its lowest value is the worst. Required.
      extra_metrics: more metric functions `(labels, predictions) -> {name: (value,
        update_op)}`, bound in gin (`segmentation.extra_metrics = [@my_metric]`).
        Default none.
    """

    name = None
    num_outputs = None
    class_names = ()
    dense_labels = False
    label_dtype = tf.int32
    ignore_label = IGNORE_LABEL
    headline = None
    lower_is_better = frozenset({"loss"})
    per_class_keys = ()
    per_example_score = None
    worst_is_lowest = True
    extra_metrics = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.name:  # A named task is known by that name to every results reader.
            _REGISTRY[cls.name] = cls

    @classmethod
    def from_class_names(cls, class_names) -> "Task":
        """The task as a results reader rebuilds it from a statistics file (constructor contract)."""
        return cls(num_classes=len(class_names), class_names=list(class_names))

    # Data: read by data/input.py.

    @abc.abstractmethod
    def label_features(self) -> dict:
        """`{TFRecord key: tf.io.FixedLenFeature}` of the label; parsed with the image's keys."""

    @abc.abstractmethod
    def decode_label(self, parsed: dict, image_hw, index, filename):
        """`(label, checks)` for one parsed example: the label tensor and a list of
        `tf.debugging.Assert` ops that stop on a bad one, naming `index` and `filename`."""

    def required_keys(self) -> list:
        """TFRecord keys every example of this task must have (named when one is missing)."""
        return [key for key, spec in self.label_features().items() if spec.default_value is None]

    # Model: read by models/model_fn.py and models/inference.py.

    @abc.abstractmethod
    def head(self, outputs, images):
        """The network's outputs [B, h, w, num_outputs] -> logits (the task's shape)."""

    @abc.abstractmethod
    def predictions(self, logits) -> dict:
        """`{name: tensor}` predicted from the logits (PREDICT's outputs, the metrics' input)."""

    @abc.abstractmethod
    def loss(self, logits, labels):
        """The scalar training loss."""

    @abc.abstractmethod
    def serving_outputs(self, predictions) -> dict:
        """The SavedModel's `serving_default` outputs, from `predictions`."""

    def combine_views(self, views):
        """One logits tensor from several views' (scales, flips) logits: their mean."""
        return tf.add_n(views) / len(views)

    # Evaluation: read by models/model_fn.py, core/results.py, tools/compare.py.

    @abc.abstractmethod
    def metric_ops(self, labels, predictions, logits) -> dict:
        """The task's own streaming metrics, `{name: (value, update_op)}` (`metrics/`)."""

    def eval_metric_ops(self, labels, predictions, logits) -> dict:
        """What the model_fn hands Estimator: `metric_ops`, the `extra_metrics`, and the
        exact example count `num_examples`."""
        ops = self.metric_ops(labels, predictions, logits)
        for metric in self.extra_metrics:
            ops.update(metric(labels, predictions))
        ops["num_examples"] = example_count(labels)
        return ops

    @abc.abstractmethod
    def per_example(self, labels, predictions, logits) -> dict:
        """`{name: [B]}` values of each example, written to the per-example CSV;
        `per_example_score` among them ranks the examples."""

    @abc.abstractmethod
    def panels(self, tensors: dict):
        """uint8 [B, H, W', 3] images shown in TensorBoard for chosen examples; `tensors`
        has `image`, `labels` and the predictions."""

    def statistics(self, labels, predictions, logits) -> dict:
        """Each example's additive share of the headline metrics: `{name: [B, k]}` ({}: none)."""
        return {}

    def from_sums(self, sums: dict) -> dict:
        """numpy: `{name: float64 [R, k]}` sums of `statistics()` over R sets of examples ->
        `{metric: float64 [R]}`, each metric as `metric_ops()` defines it."""
        return {}

    def label_counts(self, statistics: dict):
        """numpy: `{name: [N, k]}` per-example statistics -> float64 [N, C], each example's
        labelled pixels (or examples) of each class, or None: the task has no classes. What
        the `class` and `area` slices read (`metrics/slices.py`)."""
        return None

    def higher_is_better(self, metric: str) -> bool:
        """Whether a larger value of `metric` is better (the best checkpoint, early stopping)."""
        return metric not in self.lower_is_better


class CategoricalTask(Task):
    """Tasks whose logits end in one score per class: argmax classes and softmax probabilities."""

    lower_is_better = Task.lower_is_better | {"ece"}  # The expected calibration error.

    def combine_views(self, views):
        """The log of the views' mean probabilities (DeepLab averages softmax over scales and flips).

        Softmax of the result is that mean, so `probabilities`, `classes` and the
        cross-entropy are those of the averaged prediction.
        """
        mean = tf.add_n([tf.nn.softmax(view) for view in views]) / len(views)
        return tf.math.log(tf.maximum(mean, 1e-30))

    def label_counts(self, statistics):
        """The rows of each example's confusion counts (rows = ground truth)."""
        if "confusion" not in statistics:
            return None
        confusion = np.asarray(statistics["confusion"], np.float64)
        return confusion.reshape(len(confusion), self.num_classes, self.num_classes).sum(axis=2)

    def predictions(self, logits):
        return {
            "classes": tf.argmax(logits, axis=-1, output_type=tf.int32, name="classes"),
            "probabilities": tf.nn.softmax(logits, name="probabilities"),
        }

    def serving_outputs(self, predictions):
        return {"classes": predictions["classes"], "probabilities": predictions["probabilities"]}
