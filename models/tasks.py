"""Tasks: what the model predicts and how it is judged, one object per head.

`build_model_fn(network, task)` is task-agnostic: the network maps images to
`num_outputs` channels at its output stride, and the task does everything else.
A task supplies:

- data: `label_features()` (its TFRecord keys), `decode_label()` (parse and check
  one label, naming the file on a bad one), `label_shape()`, `label_dtype`, and
  `dense_labels` (a per-pixel label moves with the image under flips and crops);
- model: `head()` (network outputs -> logits), `predictions()`, `loss()`,
  `serving_outputs()` (the SavedModel's outputs);
- evaluation: `eval_metrics()` (streaming `(value, update_op)` pairs from
  `metrics/`), `per_example()` (the values of each example, the first one ranks
  them for `--worst_k`), `panels()` (the image shown in TensorBoard for a chosen
  example), `statistics()` and `from_sums()` (each example's additive share of the
  headline metrics, and those metrics from any weighted sum of the shares: the
  bootstrap intervals and paired comparisons of `metrics/bootstrap.py`);
- results: `class_names` and `per_class_keys` (the `per_class` table of a results
  record), `per_example_score` and `worst_is_lowest` (which per-example value ranks
  the examples, and which end is the worst), `headline` (the metric printed at the end and, unless BEST_METRIC says
  otherwise, the one that picks the best checkpoint) and `higher_is_better()`.

Three ship: `Segmentation`, `Classification` and `Regression`. A fork's own head is
one more class like these, bound with `TASK = @my_task()` (see docs/fork.md).
"""

import tensorflow as tf

from common.constants import IGNORE_LABEL
from common.errors import ConfigError
from data import schema
from metrics import (
    bootstrap,
    calibration,
    classification_metrics,
    example_count,
    regression_metrics,
    segmentation_metrics,
    streaming,
    streaming_mean,
    summaries,
)
from metrics.boundary import boundary_iou
from metrics.calibration import calibration_metrics
from metrics.confusion import fbeta_name


def _names(names, count, what):
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


class Task:
    """The parts every task shares; subclasses fill in the rest (see module doc)."""

    name = "task"
    dense_labels = False
    label_dtype = tf.int32
    headline = None
    lower_is_better = frozenset({"loss"})
    per_class_keys = ()
    class_names = ()
    extra_metrics = ()

    def higher_is_better(self, metric: str) -> bool:
        """Whether a larger value of `metric` is better (for the best checkpoint and early stopping)."""
        return metric not in self.lower_is_better

    def required_keys(self):
        """TFRecord keys every example of this task must have (named when one is missing)."""
        return [key for key, spec in self.label_features().items() if spec.default_value is None]

    def evaluation_metrics(self, labels, predictions, logits):
        """`eval_metric_ops`: the task's metrics, its `extra_metrics`, and the exact example count.

        An extra metric is a function `(labels, predictions) -> {name: (value,
        update_op)}`, `predictions` being the task's dict (`classes`,
        `probabilities` or `predictions`); gin lists them, e.g.
        `segmentation.extra_metrics = [@my_metric]`.
        """
        ops = self.eval_metrics(labels, predictions, logits)
        for metric in self.extra_metrics:
            ops.update(metric(labels, predictions))
        ops["num_examples"] = example_count(labels)
        return ops

    def combine_views(self, views):
        """One logits tensor from several views' (scales, flips): their mean."""
        return tf.add_n(views) / len(views)

    def statistics(self, labels, predictions, logits):
        """Each example's additive share of the headline metrics: `{name: [B, k]}` ({}: none)."""
        return {}

    def from_sums(self, sums):
        """numpy: `{name: float64 [R, k]}` sums of `statistics()` over R sets of examples ->
        `{metric: float64 [R]}`, each metric as `eval_metrics()` defines it."""
        return {}


class _Categorical(Task):
    """Tasks whose logits end in one score per class: argmax classes and softmax probabilities."""

    lower_is_better = Task.lower_is_better | {"ece"}  # The expected calibration error.

    def combine_views(self, views):
        """The log of the views' mean probabilities (DeepLab averages softmax over scales and flips).

        Softmax of the result is that mean, so `probabilities`, `classes` and the
        cross-entropy are those of the averaged prediction.
        """
        mean = tf.add_n([tf.nn.softmax(view) for view in views]) / len(views)
        return tf.math.log(tf.maximum(mean, 1e-30))

    def predictions(self, logits):
        return {
            "classes": tf.argmax(logits, axis=-1, output_type=tf.int32, name="classes"),
            "probabilities": tf.nn.softmax(logits, name="probabilities"),
        }

    def serving_outputs(self, predictions):
        return {"classes": predictions["classes"], "probabilities": predictions["probabilities"]}


_PNG_SIGNATURE = list(b"\x89PNG\r\n\x1a\n")
_PALETTE_MASK_MESSAGE = (
    "mask is a colour-palette PNG (decoded as grey it gives colour luminances like 220, not class ids): "
    "convert it with remove_gt_colormap.py (DeepLab) or tools/build_tfrecords.py: index"
)  # No apostrophe: TensorFlow prints an assertion's strings with quotes escaped.


def _is_colour_palette_png(encoded):
    """Whether PNG bytes hold a palette of colours, not of greys (a bool scalar tensor).

    `decode_png(channels=1)` turns a palette PNG (IHDR colour type, byte 25, is 3)
    into its colours' grey levels, not its indices: PASCAL VOC's SegmentationClass
    masks, which DeepLab's converters store byte for byte when remove_gt_colormap.py
    was skipped, read as 38, 75, ... and 220 (the cream border) instead of 1, 2, ...
    and 255. A palette of greys only (PIL's `convert("P")` of a grey mask) decodes
    to those greys, as DeepLab reads it too, and is let through.
    """
    head = tf.strings.substr(tf.strings.join([tf.strings.substr(encoded, 0, 26), "\0" * 26]), 0, 26)
    head = tf.io.decode_raw(head, tf.uint8)
    is_palette = tf.logical_and(tf.reduce_all(tf.equal(head[:8], _PNG_SIGNATURE)), tf.equal(head[25], 3))

    def has_colour():
        rgb = tf.io.decode_png(encoded, channels=3)
        return tf.reduce_any(tf.not_equal(rgb[:, :, :1], rgb[:, :, 1:]))

    return tf.cond(is_palette, has_colour, lambda: tf.constant(False))


def _palette_grey_levels(ids):
    """The grey levels `decode_png(channels=1)` gives the VOC palette colours of `ids` (uint8 [len(ids)]).

    Decoded in the graph from a constant palette PNG, so they are exactly this
    decoder's (libpng's weights, with greys kept), not a re-derived formula.
    """
    import io

    import numpy as np
    from PIL import Image

    from common.palette import voc_colour_map

    image = Image.fromarray(np.asarray([ids], np.uint8), mode="P")
    image.putpalette(voc_colour_map(256).ravel().tolist())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return tf.io.decode_png(tf.constant(buffer.getvalue()), channels=1)[0, :, 0]


class Segmentation(_Categorical):
    """Per-pixel classes. Labels: DeepLab's PNG mask, `ignore_label` (255) pixels skipped.

    Args:
      num_classes: C (labels 0..C-1).
      class_names: C names for the per-class results (default: ids).
      ignore_label: label value left out of the loss and every metric.
      background_class: class id of the background, for the foreground-vs-background
        F-beta (`foreground_f1`); None to leave it out.
      fbeta: the beta of that F-beta.
      confusion_summary: write the confusion matrix image and per-class table.
      boundary_iou: Boundary IoU per class and mean (`metrics/boundary.py`).
      calibration_bins: bins of the pixels' expected calibration error and reliability
        diagram (`metrics/calibration.py`); 0 for neither.
      extra_metrics: more metric functions (see `Task.evaluation_metrics`).
      dice_weight: adds `dice_weight * (1 - soft Dice)` to the cross-entropy (`soft_dice`):
        an overlap term that weighs each class alike, however few its pixels. 0: the
        cross-entropy alone.
    """

    name = "segmentation"
    dense_labels = True
    headline = "mean_iou"
    lower_is_better = _Categorical.lower_is_better | {"pixel_loss"}

    def __init__(
        self,
        num_classes: int,
        class_names=None,
        ignore_label: int = IGNORE_LABEL,
        background_class=0,
        fbeta: float = 1.0,
        confusion_summary: bool = True,
        boundary_iou: bool = True,
        calibration_bins: int = calibration.NUM_BINS,
        extra_metrics=(),
        dice_weight: float = 0.0,
    ):
        if dice_weight < 0:
            raise ValueError(f"segmentation: dice_weight must be >= 0, got {dice_weight}")
        self.dice_weight = dice_weight
        self._cross_entropy_memo = None
        self.boundary_iou, self.calibration_bins = boundary_iou, calibration_bins
        self.per_class_keys = ("iou", "dice", "boundary_iou") if boundary_iou else ("iou", "dice")
        self.num_classes = self.num_outputs = num_classes
        self.extra_metrics = list(extra_metrics)
        self.class_names = _names(class_names, num_classes, "class")
        self.ignore_label = ignore_label
        self.background_class = background_class
        self.fbeta = fbeta
        self.confusion_summary = confusion_summary

    def label_features(self):
        return {schema.MASK_ENCODED: tf.io.FixedLenFeature((), tf.string)}

    def label_shape(self, height, width):
        return [height, width]

    def decode_label(self, parsed, image_hw, index, filename):
        encoded = parsed[schema.MASK_ENCODED]
        mask = tf.io.decode_png(encoded, channels=1)[:, :, 0]
        mask_hw = tf.shape(mask)
        # A VOC colour mask stored as-is would otherwise fail below as "label outside [0, C): 220".
        not_palette = tf.debugging.Assert(
            tf.logical_not(_is_colour_palette_png(encoded)), [_PALETTE_MASK_MESSAGE, index, "file", filename]
        )
        same_size = tf.debugging.Assert(
            tf.reduce_all(tf.equal(image_hw, mask_hw)),
            ["mask size differs from its image size: index", index, "file", filename, "image", image_hw]
            + ["mask", mask_hw],
        )
        # A label outside [0, C) gives a zero one-hot row (no loss) or NaN on some
        # devices: stop at the first such mask instead, naming it.
        bad = tf.logical_and(mask >= self.num_classes, tf.not_equal(mask, self.ignore_label))
        first_bad = tf.boolean_mask(mask, bad)[:1]
        # Grey levels of the classes' VOC colours (and the cream border's): a colour mask saved as grey.
        greys = _palette_grey_levels(sorted({*range(1, min(self.num_classes, 256)), 255}))
        looks_grey = tf.reduce_any(tf.equal(first_bad[:, None], greys[None, :]))
        hint = tf.where(looks_grey, "(the grey level of a VOC palette colour: a colour mask saved as grey?)", "")
        with tf.control_dependencies([not_palette]):  # The palette message, not this one, for a palette mask.
            in_range = tf.debugging.Assert(
                tf.logical_not(tf.reduce_any(bad)),
                [f"label outside [0, {self.num_classes}) and not {self.ignore_label}:", first_bad]
                + ["index", index, "file", filename, hint],
            )
        return mask, [not_palette, same_size, in_range]

    def head(self, outputs, images):
        """Logits [B, H, W, C]: the network's, upsampled to the image when its stride is > 1."""
        if outputs.shape[1:3] == images.shape[1:3] and outputs.shape[1:3].is_fully_defined():
            return outputs
        return tf.image.resize(outputs, tf.shape(images)[1:3], method="bilinear")

    def _valid(self, labels):
        valid = tf.not_equal(labels, self.ignore_label)
        return valid, tf.where(valid, labels, tf.zeros_like(labels))

    def _cross_entropy(self, logits, labels):
        """`(valid, safe_labels, per-pixel cross-entropy)`, made once for the loss and the
        metrics of one graph (the model_fn asks for the loss, then the metrics)."""
        key = (logits.ref(), labels.ref())
        if self._cross_entropy_memo is None or self._cross_entropy_memo[0] != key:
            valid, safe_labels = self._valid(labels)
            per_pixel = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe_labels, logits=logits)
            self._cross_entropy_memo = (key, valid, safe_labels, per_pixel)
        return self._cross_entropy_memo[1:]

    def loss(self, logits, labels):
        """Mean cross-entropy over the non-ignored pixels (ignored ones: dummy label 0, weight 0),
        plus `dice_weight` times `1 - soft_dice`."""
        valid, safe_labels, per_pixel = self._cross_entropy(logits, labels)
        # What tf.compat.v1.losses.sparse_softmax_cross_entropy does with the same op.
        loss = tf.compat.v1.losses.compute_weighted_loss(per_pixel, weights=tf.cast(valid, tf.float32))
        if self.dice_weight:
            loss += self.dice_weight * (1.0 - soft_dice(logits, safe_labels, valid, self.num_classes))
        return loss

    def eval_metrics(self, labels, predictions, logits):
        ops = segmentation_metrics(
            labels,
            predictions["classes"],
            self.num_classes,
            self.class_names,
            self.ignore_label,
            self.background_class,
            self.fbeta,
        )
        valid, _, pixel_loss = self._cross_entropy(logits, labels)
        # Estimator's own `loss` is the mean of per-batch means (it depends on the batch
        # size); this one is exact: the mean cross-entropy over every valid pixel.
        ops["pixel_loss"] = streaming_mean(pixel_loss, mask=valid, name="pixel_loss")
        confidence = tf.reduce_max(predictions["probabilities"], axis=-1)
        ops["average_confidence"] = streaming_mean(confidence, mask=valid, name="average_confidence")
        if self.calibration_bins:
            correct = tf.equal(predictions["classes"], tf.cast(labels, tf.int32))
            ops.update(calibration_metrics(confidence, correct, self.calibration_bins, mask=valid))
        if self.boundary_iou and labels.shape[1:3].is_fully_defined():
            ops.update(
                boundary_iou(labels, predictions["classes"], self.num_classes, self.class_names, self.ignore_label)
            )
        if self.confusion_summary:
            confusion, update = ops["confusion_matrix"]
            # The per-class values segmentation_metrics already derived, not a second derivation.
            columns = {
                key.capitalize() if key == "dice" else key.upper(): tf.stack(
                    [ops[f"{key}/{name}"][0] for name in self.class_names]
                )
                for key in ("iou", "dice")
            }
            ops.update(summaries.confusion_summaries(confusion, self.class_names, columns, update))
        return ops

    def per_example(self, labels, predictions, logits):
        """Each example's mean IoU over the classes in its labels or predictions (lower is worse)."""
        return {"mean_iou": per_example_mean_iou(labels, predictions["classes"], self.num_classes, self.ignore_label)}

    def statistics(self, labels, predictions, logits):
        """Each example's confusion counts (non-ignored pixels): int32 [B, C * C]."""
        confusion = per_example_confusion(labels, predictions["classes"], self.num_classes, self.ignore_label)
        return {"confusion": tf.reshape(confusion, [-1, self.num_classes**2])}

    def from_sums(self, sums):
        confusion = sums["confusion"].reshape(-1, self.num_classes, self.num_classes)
        return bootstrap.confusion_metrics(confusion, self.class_names)

    per_example_score, worst_is_lowest = "mean_iou", True

    def panels(self, tensors):
        return summaries.mask_panels(tensors["image"], tensors["labels"], tensors["classes"], self.ignore_label)


def soft_dice(logits, labels, valid, num_classes: int, smooth: float = 1.0):
    """The batch's soft Dice, the mean over classes of `(2 sum(p y) + s) / (sum(p) + sum(y) + s)`.

    p is the softmax probability of the class and y its one-hot label, summed over every
    valid pixel of the batch: `2 tp / (2 tp + fp + fn)` with soft counts, as nnU-Net's
    batch Dice (Isensee et al. 2021; V-Net, Milletari et al. 2016, squares the terms of
    the denominator). `smooth` s keeps a class absent from labels and predictions at 1, not 0/0.
    """
    mask = tf.cast(valid, tf.float32)[..., None]
    probabilities = tf.nn.softmax(logits) * mask
    onehot = tf.one_hot(labels, num_classes) * mask
    overlap = tf.reduce_sum(probabilities * onehot, [0, 1, 2])
    total = tf.reduce_sum(probabilities + onehot, [0, 1, 2])
    return tf.reduce_mean((2.0 * overlap + smooth) / (total + smooth))


def per_example_confusion(labels, predictions, num_classes: int, ignore_label: int = IGNORE_LABEL):
    """Each example's confusion matrix over its non-ignored pixels: int32 [B, C, C] (rows =
    ground truth). One bincount over `example * C * C + label * C + prediction` per batch."""
    labels = tf.cast(labels, tf.int32)
    predictions = tf.cast(predictions, tf.int32)
    batch = tf.shape(labels)[0]
    cells = num_classes * num_classes
    example = tf.reshape(tf.range(batch), [-1] + [1] * (labels.shape.rank - 1))
    valid = tf.not_equal(labels, ignore_label)
    ids = tf.where(valid, example * cells + labels * num_classes + predictions, batch * cells)
    counts = streaming.histogram(ids, batch * cells, dtype=tf.int32)
    return tf.reshape(counts, [batch, num_classes, num_classes])


def per_example_mean_iou(labels, predictions, num_classes: int, ignore_label: int = IGNORE_LABEL):
    """Mean IoU of each example, over the classes present in its labels or predictions.

    Returns:
      float64 [B]; NaN for an example whose pixels are all ignored.
    """
    confusion = tf.cast(per_example_confusion(labels, predictions, num_classes, ignore_label), tf.float64)
    true_positive = tf.linalg.diag_part(confusion)
    union = tf.reduce_sum(confusion, 2) + tf.reduce_sum(confusion, 1) - true_positive
    present = union > 0
    iou = true_positive / tf.where(present, union, 1.0)
    count = tf.reduce_sum(tf.cast(present, tf.float64), 1)
    total = tf.reduce_sum(tf.where(present, iou, 0.0), 1)
    return tf.where(count > 0, total / tf.maximum(count, 1.0), float("nan"))


class Classification(_Categorical):
    """One class per image. Labels: `image/class/label` (int64), TF-slim's key.

    Args:
      num_classes: K (labels 0..K-1).
      class_names: K names for the per-class results (default: ids).
      beta: the beta of the F-beta metrics (1: F1).
      top_k: the k of each `precision_at_<k>` to report (each <= K).
      calibration_bins: bins of the expected calibration error and reliability diagram
        (`metrics/calibration.py`); 0 for neither.
      extra_metrics: more metric functions (see `Task.evaluation_metrics`).
    """

    name = "classification"
    headline = "accuracy"
    lower_is_better = _Categorical.lower_is_better | {"cross_entropy"}

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
        self.class_names = _names(class_names, num_classes, "class")
        self.beta = beta
        self.top_k = tuple(top_k)
        bad = [k for k in self.top_k if not 1 <= k <= num_classes]
        if bad:
            raise ConfigError(f"classification.top_k: {bad[0]} is not in [1, {num_classes}]")
        self.per_class_keys = ("precision", "recall", fbeta_name(beta), "roc_auc")

    def label_features(self):
        return {schema.CLASS_LABEL: tf.io.FixedLenFeature((), tf.int64)}

    def label_shape(self, height, width):
        return []

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

    def eval_metrics(self, labels, predictions, logits):
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

    per_example_score, worst_is_lowest = "true_class_probability", True

    def panels(self, tensors):
        """The image framed green when classified right, red when wrong."""
        right = tf.equal(tf.cast(tensors["labels"], tf.int32), tensors["classes"])
        colours = tf.where(
            right[:, None],
            tf.constant([summaries.RIGHT_COLOUR], tf.uint8),
            tf.constant([summaries.ERROR_COLOUR], tf.uint8),
        )
        return summaries.framed(tensors["image"], colours)


class Regression(Task):
    """One or more real values per image. Labels: `image/regression/target` (float list).

    Args:
      num_targets: T, the number of values per image.
      target_names: T names (the rows of the results with several targets).
      extra_metrics: more metric functions (see `Task.evaluation_metrics`).
    """

    name = "regression"
    label_dtype = tf.float32
    headline = "rmse"
    lower_is_better = frozenset({"loss", "rmse", "mae", "mape", "mape_zero_labels"})

    def __init__(self, num_targets: int = 1, target_names=None, extra_metrics=()):
        self.extra_metrics = list(extra_metrics)
        if num_targets < 1:
            raise ConfigError(f"regression.num_targets must be >= 1, got {num_targets}")
        self.class_names = _names(target_names, num_targets, "target")
        self.num_outputs = num_targets
        # One target: the headline metrics say it all; several: a row per target.
        self.per_class_keys = ("rmse", "mae", "r2") if self.num_outputs > 1 else ()

    def label_features(self):
        return {schema.REGRESSION_TARGET: tf.io.FixedLenFeature((self.num_outputs,), tf.float32)}

    def label_shape(self, height, width):
        return [self.num_outputs]

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

    def eval_metrics(self, labels, predictions, logits):
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

    per_example_score, worst_is_lowest = "absolute_error", False

    def panels(self, tensors):
        """The image, framed grey (the values are in the per-example CSV)."""
        count = tf.shape(tensors["image"])[0]
        return summaries.framed(
            tensors["image"], tf.tile(tf.constant([summaries.NEUTRAL_COLOUR], tf.uint8), [count, 1])
        )
