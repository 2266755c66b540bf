"""`Regression`: one or more real values per image, `image/regression/target` (`models/task.py`)."""

import tensorflow as tf

from common.errors import ConfigError
from data import schema
from metrics import bootstrap, regression_metrics, summaries
from models.task import Task, class_names_for, spatial_mean


class Regression(Task):
    """One or more real values per image. Labels: `image/regression/target` (float list).

    Args:
      num_targets: T, the number of values per image.
      target_names: T names (the rows of the results with several targets).
      extra_metrics: more metric functions (see `Task.extra_metrics`).
    """

    name = "regression"
    label_dtype = tf.float32
    headline = "rmse"
    per_example_score, worst_is_lowest = "absolute_error", False
    lower_is_better = frozenset({"loss", "rmse", "mae", "mape", "mape_zero_labels"})

    @classmethod
    def from_class_names(cls, class_names):
        """Rebuilt from a statistics file: its class names are the target names."""
        return cls(num_targets=len(class_names), target_names=list(class_names))

    def __init__(self, num_targets: int = 1, target_names=None, extra_metrics=()):
        self.extra_metrics = list(extra_metrics)
        if num_targets < 1:
            raise ConfigError(f"regression.num_targets must be >= 1, got {num_targets}")
        self.class_names = class_names_for(target_names, num_targets, "target")
        self.num_outputs = num_targets
        # One target: the headline metrics say it all; several: a row per target.
        self.per_class_keys = ("rmse", "mae", "r2") if self.num_outputs > 1 else ()

    def label_features(self):
        return {schema.REGRESSION_TARGET: tf.io.FixedLenFeature((self.num_outputs,), tf.float32)}

    @tf.autograph.experimental.do_not_convert
    def decode_label(self, parsed, image_hw, index, filename):
        target = parsed[schema.REGRESSION_TARGET]
        finite = tf.debugging.Assert(
            tf.reduce_all(tf.math.is_finite(target)),
            ["regression target is not finite:", target, "index", index, "file", filename],
        )
        return target, [finite]

    def head(self, outputs, images):
        return spatial_mean(outputs)

    def predictions(self, logits):
        return {"predictions": tf.identity(logits, name="predictions")}

    def serving_outputs(self, predictions):
        return {"predictions": predictions["predictions"]}

    def loss(self, logits, labels):
        return tf.compat.v1.losses.mean_squared_error(labels=labels, predictions=logits)

    def metric_ops(self, labels, predictions, logits):
        values = predictions["predictions"]
        ops = regression_metrics(labels, values)
        if self.num_outputs > 1:
            for i, name in enumerate(self.class_names):
                for key, op in regression_metrics(labels[:, i], values[:, i]).items():
                    ops[f"{key}/{name}"] = op
        return ops

    def statistics(self, labels, predictions, logits):
        """Each example's sums over its targets: count, squared and absolute error, y, y^2."""
        labels = tf.cast(labels, tf.float64)
        error = tf.cast(predictions["predictions"], tf.float64) - labels
        columns = [tf.ones_like(labels), tf.square(error), tf.abs(error), labels, tf.square(labels)]
        return {"sums": tf.stack([tf.reduce_sum(column, axis=-1) for column in columns], axis=-1)}

    def from_sums(self, sums):
        return bootstrap.regression_metrics(sums["sums"])

    def per_example(self, labels, predictions, logits):
        """The mean absolute error over the targets (higher is worse), then target and prediction."""
        values = predictions["predictions"]
        fields = {"absolute_error": tf.reduce_mean(tf.abs(values - labels), axis=-1)}
        for i, name in enumerate(self.class_names):
            fields[f"{name}_target"] = labels[:, i]
            fields[f"{name}_predicted"] = values[:, i]
        return fields

    def panels(self, tensors):
        """The image, framed grey (the values are in the per-example CSV)."""
        count = tf.shape(tensors["image"])[0]
        return summaries.framed(
            tensors["image"], tf.tile(tf.constant([summaries.NEUTRAL_COLOUR], tf.uint8), [count, 1])
        )
