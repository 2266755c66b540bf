"""`Segmentation`: a class per pixel, DeepLab's PNG masks, IoU and its kin (`models/task.py`)."""

import tensorflow as tf

from common.constants import IGNORE_LABEL
from data import masks, schema
from metrics import bootstrap, calibration, segmentation_metrics, streaming_mean, summaries
from metrics.boundary import boundary_iou
from metrics.calibration import calibration_metrics
from metrics.per_example import per_example_confusion, per_example_mean_iou
from models.losses import soft_dice
from models.task import CategoricalTask, class_names_for


class Segmentation(CategoricalTask):
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
      extra_metrics: more metric functions (see `Task.extra_metrics`).
      dice_weight: adds `dice_weight * (1 - soft Dice)` to the cross-entropy (`soft_dice`):
        an overlap term that weighs each class alike, however few its pixels. 0: the
        cross-entropy alone.
    """

    name = "segmentation"
    dense_labels = True
    headline = "mean_iou"
    per_example_score, worst_is_lowest = "mean_iou", True
    lower_is_better = CategoricalTask.lower_is_better | {"pixel_loss"}

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
        self.class_names = class_names_for(class_names, num_classes)
        self.ignore_label = ignore_label
        self.background_class = background_class
        self.fbeta = fbeta
        self.confusion_summary = confusion_summary

    def label_features(self):
        return {schema.MASK_ENCODED: tf.io.FixedLenFeature((), tf.string)}

    @tf.autograph.experimental.do_not_convert
    def decode_label(self, parsed, image_hw, index, filename):
        encoded = parsed[schema.MASK_ENCODED]
        mask = tf.io.decode_png(encoded, channels=1)[:, :, 0]
        mask_hw = tf.shape(mask)
        # A VOC colour mask stored as-is would otherwise fail below as "label outside [0, C): 220".
        not_palette = tf.debugging.Assert(
            tf.logical_not(masks.is_colour_palette_png(encoded)), [masks.PALETTE_MASK_MESSAGE, index, "file", filename]
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
        greys = masks.palette_grey_levels(sorted({*range(1, min(self.num_classes, 256)), 255}))
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

    def metric_ops(self, labels, predictions, logits):
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

    def panels(self, tensors):
        return summaries.mask_panels(tensors["image"], tensors["labels"], tensors["classes"], self.ignore_label)
