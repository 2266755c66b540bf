"""`Classification`: one class per image, TF-slim's `image/class/label` (`models/task.py`)."""

import tensorflow as tf

from common.errors import ConfigError
from data import schema
from metrics import bootstrap, calibration, classification_metrics, streaming_mean, summaries
from metrics.calibration import calibration_metrics
from metrics.confusion import fbeta_name
from models.task import CategoricalTask, class_names_for, spatial_mean


class Classification(CategoricalTask):
    """One class per image. Labels: `image/class/label` (int64), TF-slim's key.

    Args:
      num_classes: K (labels 0..K-1).
      class_names: K names for the per-class results (default: ids).
      beta: the beta of the F-beta metrics (1: F1).
      top_k: the k of each `precision_at_<k>` to report (each <= K).
      calibration_bins: bins of the expected calibration error and reliability diagram
        (`metrics/calibration.py`); 0 for neither.
      extra_metrics: more metric functions (see `Task.extra_metrics`).
    """

    name = "classification"
    headline = "accuracy"
    per_example_score, worst_is_lowest = "true_class_probability", True
    lower_is_better = CategoricalTask.lower_is_better | {"cross_entropy"}

    def __init__(
        self,
        num_classes: int,
        class_names=None,
        beta: float = 1.0,
        top_k=(2,),
        calibration_bins: int = calibration.NUM_BINS,
        extra_metrics=(),
    ):
        self.calibration_bins = calibration_bins
        self.num_classes = self.num_outputs = num_classes
        self.extra_metrics = list(extra_metrics)
        self.class_names = class_names_for(class_names, num_classes)
        self.beta = beta
        self.top_k = tuple(top_k)
        bad = [k for k in self.top_k if not 1 <= k <= num_classes]
        if bad:
            raise ConfigError(f"classification.top_k: {bad[0]} is not in [1, {num_classes}]")
        self.per_class_keys = ("precision", "recall", fbeta_name(beta), "roc_auc")

    def label_features(self):
        return {schema.CLASS_LABEL: tf.io.FixedLenFeature((), tf.int64)}

    @tf.autograph.experimental.do_not_convert
    def decode_label(self, parsed, image_hw, index, filename):
        label = parsed[schema.CLASS_LABEL]
        in_range = tf.debugging.Assert(
            tf.logical_and(label >= 0, label < self.num_classes),
            [f"class label outside [0, {self.num_classes}):", label, "index", index, "file", filename],
        )
        return label, [in_range]

    def head(self, outputs, images):
        return spatial_mean(outputs)

    def loss(self, logits, labels):
        return tf.compat.v1.losses.sparse_softmax_cross_entropy(labels=labels, logits=logits)

    def metric_ops(self, labels, predictions, logits):
        ops = classification_metrics(
            labels, predictions["probabilities"], self.num_classes, self.class_names, self.beta, self.top_k
        )
        cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        ops["cross_entropy"] = streaming_mean(cross_entropy, name="cross_entropy")
        if self.calibration_bins:
            correct = tf.equal(predictions["classes"], tf.cast(labels, tf.int32))
            confidence = tf.reduce_max(predictions["probabilities"], axis=-1)
            ops.update(calibration_metrics(confidence, correct, self.calibration_bins))
        confusion, update = ops["confusion_matrix"]
        columns = {key: tf.stack([ops[f"{key}/{name}"][0] for name in self.class_names]) for key in self.per_class_keys}
        ops.update(summaries.confusion_summaries(confusion, self.class_names, columns, update))
        return ops

    def statistics(self, labels, predictions, logits):
        """Each example's cell of the confusion matrix, one-hot: [B, K * K]."""
        cells = tf.cast(labels, tf.int32) * self.num_classes + tf.cast(predictions["classes"], tf.int32)
        return {"confusion": tf.one_hot(cells, self.num_classes**2, dtype=tf.int32)}

    def from_sums(self, sums):
        confusion = sums["confusion"].reshape(-1, self.num_classes, self.num_classes)
        return bootstrap.classification_metrics(confusion, self.class_names)

    def per_example(self, labels, predictions, logits):
        """The probability given to the true class (lower is worse), the label and the prediction."""
        probabilities = predictions["probabilities"]
        true_probability = tf.gather(probabilities, tf.cast(labels, tf.int32), batch_dims=1)
        return {"true_class_probability": true_probability, "label": labels, "predicted": predictions["classes"]}

    def panels(self, tensors):
        """The image framed green when classified right, red when wrong."""
        right = tf.equal(tf.cast(tensors["labels"], tf.int32), tensors["classes"])
        colours = tf.where(
            right[:, None],
            tf.constant([summaries.RIGHT_COLOUR], tf.uint8),
            tf.constant([summaries.ERROR_COLOUR], tf.uint8),
        )
        return summaries.framed(tensors["image"], colours)
