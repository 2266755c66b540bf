"""`build_model_fn`: configure the builder, hand Estimator the plain `model_fn` it returns.

Estimator inspects the model_fn's signature, so never give it a gin-wrapped
function: gin configures `build_model_fn` instead.
"""

import tensorflow as tf

from metrics import example_count, segmentation_metrics, streaming_mean
from models import unet

IGNORE_LABEL = 255


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
      training_hooks: callables `(predictions, labels) -> SessionRunHook` added in TRAIN.
      evaluation_hooks: callables `(predictions, labels) -> SessionRunHook` added in EVAL.

    Returns:
      `model_fn(features, labels, mode, params, config) -> EstimatorSpec`, where
      `features` has `image` (uint8 [B,H,W,3]) and optionally `index` (int64 [B]),
      and `labels` is the int mask [B,H,W].
    """
    class_names = list(class_names) if class_names is not None else None

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
            # Batch-norm moving averages update with every step.
            with tf.control_dependencies(tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)):
                train_op = optimizer.minimize(loss, global_step=global_step)
            return tf.estimator.EstimatorSpec(
                mode,
                loss=loss,
                train_op=train_op,
                training_hooks=[make(predictions, labels) for make in training_hooks],
            )

        eval_metric_ops = segmentation_metrics(
            labels, classes, num_classes, class_names, ignore_label, background_class, fbeta
        )
        eval_metric_ops["average_confidence"] = streaming_mean(
            tf.reduce_max(probabilities, axis=-1), mask=valid, name="average_confidence"
        )
        eval_metric_ops["num_examples"] = example_count(labels)
        return tf.estimator.EstimatorSpec(
            mode,
            loss=loss,
            predictions=predictions,
            eval_metric_ops=eval_metric_ops,
            evaluation_hooks=[make(predictions, labels) for make in evaluation_hooks],
        )

    return model_fn
