"""`build_model_fn`: configure the builder, hand Estimator the plain `model_fn` it returns.

Estimator inspects the model_fn's signature, so never give it a gin-wrapped
function: gin configures `build_model_fn` instead.
"""

import tensorflow as tf

from hooks import eval_summaries
from hooks.eval_logging import PerClassIoULoggingHook
from metrics import example_count, segmentation_metrics, streaming_mean
from models import unet

IGNORE_LABEL = 255
NAN_LOSS_MESSAGE = "non-finite loss at step"


def build_model_fn(
    num_classes: int,
    class_names=None,
    learning_rate: float = 1e-3,
    decay_steps: int = 0,
    base_filters: int = 16,
    depth: int = 3,
    ignore_label: int = IGNORE_LABEL,
    background_class=0,
    fbeta: float = 1.0,
    summary_indices=(),
    per_example: bool = True,
    confusion_summary: bool = True,
    log_every_n_eval_steps: int = 0,
    training_hooks=(),
    evaluation_hooks=(),
):
    """Builds a segmentation `model_fn` for TRAIN, EVAL and PREDICT.

    Args:
      num_classes: number of classes C (labels 0..C-1; `ignore_label` is skipped).
      class_names: C names used for the per-class metrics.
      learning_rate: Adam's learning rate.
      decay_steps: cosine-decay the learning rate to 0 over this many steps (0: constant).
      base_filters, depth: U-Net width and depth.
      ignore_label: label value masked out of the loss and the metrics.
      background_class: class id of the background, for the foreground-vs-background
        F-beta (`foreground_f1`); None to leave it out.
      fbeta: the beta of that F-beta.
      summary_indices: example indices whose image | truth | prediction | errors
        panel is written to TensorBoard at each evaluation.
      per_example: collect every example's index and mean IoU (`per_example/*`
        arrays in the evaluation result; written to a CSV by the reporters).
      confusion_summary: write the confusion matrix image and the per-class table.
      log_every_n_eval_steps: print the running per-class IoU every N evaluation
        batches (0: never).
      training_hooks: callables `(tensors) -> SessionRunHook` added in TRAIN, where
        `tensors` has `features`, `labels`, `predictions` and `loss`.
      evaluation_hooks: the same in EVAL; `tensors` also has `eval_metric_ops`.

    Returns:
      `model_fn(features, labels, mode, params, config) -> EstimatorSpec`, where
      `features` has `image` (uint8 [B,H,W,3]) and optionally `index` (int64 [B]),
      and `labels` is the int mask [B,H,W].
    """
    class_names = list(class_names) if class_names else [str(i) for i in range(num_classes)]

    def model_fn(features, labels, mode, params, config):
        del params  # Everything is bound by the builder.
        training = mode == tf.estimator.ModeKeys.TRAIN
        seed = config.tf_random_seed if config is not None and config.tf_random_seed is not None else 0
        images = tf.cast(features["image"], tf.float32) / 127.5 - 1.0
        logits = unet.unet(images, num_classes, base_filters, depth, training=training, seed=seed)
        probabilities = tf.nn.softmax(logits, name="probabilities")
        classes = tf.argmax(logits, axis=-1, output_type=tf.int32, name="classes")
        predictions = {"classes": classes, "probabilities": probabilities}
        if "index" in features:
            predictions["index"] = features["index"]

        if mode == tf.estimator.ModeKeys.PREDICT:
            outputs = {"classes": classes, "probabilities": probabilities}
            return tf.estimator.EstimatorSpec(
                mode,
                predictions=predictions,
                export_outputs={"serving_default": tf.estimator.export.PredictOutput(outputs)},
            )

        labels = tf.cast(labels, tf.int32)
        valid = tf.not_equal(labels, ignore_label)
        # Ignored pixels get a dummy label 0 and weight 0; the loss averages over valid pixels.
        loss = tf.compat.v1.losses.sparse_softmax_cross_entropy(
            labels=tf.where(valid, labels, tf.zeros_like(labels)),
            logits=logits,
            weights=tf.cast(valid, tf.float32),
        )

        if training:
            global_step = tf.compat.v1.train.get_or_create_global_step()
            rate = learning_rate
            if decay_steps:
                rate = tf.compat.v1.train.cosine_decay(learning_rate, global_step, decay_steps)
            optimizer = tf.compat.v1.train.AdamOptimizer(rate)
            # A NaN or Inf loss fails the step before any variable changes, so no NaN
            # weights can ever be saved; the message names the step (see NAN_LOSS_MESSAGE).
            finite = tf.debugging.Assert(
                tf.math.is_finite(loss), [NAN_LOSS_MESSAGE, global_step + 1, "loss", loss], name="check_loss"
            )
            # Batch-norm moving averages update with every step.
            updates = tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)
            with tf.control_dependencies([finite]):
                gradients = optimizer.compute_gradients(tf.identity(loss))
            with tf.control_dependencies(updates + [finite]):
                train_op = optimizer.apply_gradients(gradients, global_step=global_step)
            tensors = {"features": features, "labels": labels, "predictions": predictions, "loss": loss}
            return tf.estimator.EstimatorSpec(
                mode, loss=loss, train_op=train_op, training_hooks=[make(tensors) for make in training_hooks]
            )

        eval_metric_ops = segmentation_metrics(
            labels, classes, num_classes, class_names, ignore_label, background_class, fbeta
        )
        # Estimator's own `loss` is the mean of per-batch means (it depends on the batch
        # size); this one is exact: the mean cross-entropy over every valid pixel.
        pixel_loss = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.where(valid, labels, tf.zeros_like(labels)), logits=logits
        )
        eval_metric_ops["pixel_loss"] = streaming_mean(pixel_loss, mask=valid, name="pixel_loss")
        eval_metric_ops["average_confidence"] = streaming_mean(
            tf.reduce_max(probabilities, axis=-1), mask=valid, name="average_confidence"
        )
        eval_metric_ops["num_examples"] = example_count(labels)
        confusion, confusion_update = eval_metric_ops["confusion_matrix"]
        hooks = []
        if confusion_summary:
            # The per-class values segmentation_metrics already derived, not a second derivation.
            iou, dice = (
                tf.stack([eval_metric_ops[f"{key}/{name}"][0] for name in class_names]) for key in ("iou", "dice")
            )
            eval_metric_ops.update(
                eval_summaries.confusion_summaries(confusion, class_names, iou, dice, confusion_update)
            )
        if "index" in features:
            if summary_indices:
                eval_metric_ops.update(
                    eval_summaries.subset_image_summaries(
                        features["index"], features["image"], labels, classes, summary_indices
                    )
                )
            if per_example:
                eval_metric_ops.update(
                    eval_summaries.per_example_scores(features["index"], labels, classes, num_classes, ignore_label)
                )
        if log_every_n_eval_steps:
            hooks.append(PerClassIoULoggingHook(confusion_update, class_names, log_every_n_eval_steps))
        tensors = {"features": features, "labels": labels, "predictions": predictions, "loss": loss}
        tensors["eval_metric_ops"] = eval_metric_ops
        return tf.estimator.EstimatorSpec(
            mode,
            loss=loss,
            predictions=predictions,
            eval_metric_ops=eval_metric_ops,
            evaluation_hooks=hooks + [make(tensors) for make in evaluation_hooks],
        )

    return model_fn
