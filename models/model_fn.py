"""`build_model_fn`: configure the builder, hand Estimator the plain `model_fn` it returns.

Estimator inspects the model_fn's signature, so never give it a gin-wrapped
function: gin configures `build_model_fn` instead, with a *network* (images ->
`num_outputs` channels, `models/unet.py`, `models/deeplab.py`) and a *task* (loss,
predictions, metrics, summaries, serving outputs: `models/task.py`) as choices:

    build_model_fn.network = @unet()
    build_model_fn.task = %TASK        # TASK = @segmentation()

The model_fn itself knows neither the network's layers nor the task's labels.

Reading order: `train.py` -> `core/experiment.py` -> this file -> next, `models/task.py`
(what a task supplies) -> `data/input.py` -> `core/evaluation.py`.
"""

import tensorflow as tf

from common.errors import ConfigError
from hooks.gpu_check import GpuOpCheck
from metrics import summaries
from models import inference
from models import precision as precision_lib

NAN_LOSS_MESSAGE = "non-finite loss at step"

# Op types that change a variable's value: batch norm's moving averages and any other
# state a network updates as a side effect of its forward pass.
_STATE_UPDATE_PREFIXES = ("Assign", "ResourceScatter", "Scatter")


def _initializer_names(variables) -> set:
    """Every op that initializes one of `variables`.

    Under a distribution strategy a variable is one copy per device, each with its
    own initializer (`kernel/Assign`, `kernel/replica_1/Assign`), grouped under the
    variable's; missing them would re-initialize every weight at every step.
    """
    names, pending = set(), []
    for variable in variables:
        pending.append(variable.initializer)
        pending.extend(component.initializer for component in getattr(variable, "values", ()) or ())
    while pending:
        op = pending.pop()
        if op.name not in names:
            names.add(op.name)
            pending.extend(op.control_inputs)
    return names


def state_updates(graph, first_op: int):
    """The state updates a network created: ops after `graph.get_operations()[first_op]`.

    Keras layers in a graph-mode model_fn keep their updates (batch norm's moving
    averages) in `layer.updates`, not in the UPDATE_OPS collection, so a model_fn
    that only runs UPDATE_OPS silently never updates them. This finds every
    variable-assigning op the network's call created, except variable
    initializers, plus anything in UPDATE_OPS (`tf.compat.v1.layers` style).
    A network need not know either rule.
    """
    variables = tf.compat.v1.global_variables() + tf.compat.v1.local_variables()
    initializers = _initializer_names(variables)
    updates = [
        op
        for op in graph.get_operations()[first_op:]
        if op.type.startswith(_STATE_UPDATE_PREFIXES) and op.name not in initializers
    ]
    collected = tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)
    return updates + [op for op in collected if op not in updates]


def learning_rate_at(global_step, peak: float, decay_steps: int = 0, warmup_steps: int = 0):
    """The learning rate at `global_step`: linear from `peak / warmup_steps` to `peak` over
    the first `warmup_steps`, then a cosine from `peak` to 0 over the rest of
    `decay_steps` (0: constant after the warm-up). With `decay_steps`, the warm-up is at
    most a tenth of them, so a short run (`TRAIN_STEPS = 100`) still peaks and decays."""
    rate = peak
    if decay_steps:
        warmup_steps = min(warmup_steps, decay_steps // 10)
        after = tf.maximum(global_step - warmup_steps, 0)
        rate = tf.compat.v1.train.cosine_decay(peak, after, max(decay_steps - warmup_steps, 1))
        rate = rate() if callable(rate) else rate  # Eagerly, TF's v1 schedules return a function.
    if warmup_steps:
        ramp = tf.cast(global_step + 1, tf.float32) / warmup_steps
        rate = rate * tf.minimum(ramp, 1.0)
    return rate


def build_model_fn(
    network,
    task,
    learning_rate: float = 1e-3,
    decay_steps: int = 0,
    warmup_steps: int = 0,
    summary_indices=(),
    per_example: bool = True,
    training_hooks=(),
    evaluation_hooks=(),
    eval_scales=(1.0,),
    add_flipped_images: bool = False,
    precision: str = "float32",
):
    """Builds a `model_fn` for TRAIN, EVAL and PREDICT from a network and a task.

    Args:
      network: `network(images, num_outputs, training, seed) -> outputs [B, h, w,
        num_outputs]`, images float32 [B, H, W, 3] in about [-1, 1].
      task: a task object (`models/task.py`): head, loss, predictions, metrics,
        per-example values, panels and serving outputs.
      learning_rate: Adam's peak learning rate (see `warmup_steps` and `decay_steps`).
      decay_steps: cosine-decay the learning rate to 0 over this many steps (0: constant).
      warmup_steps: raise the learning rate linearly to `learning_rate` over the first
        this many steps (0: none; at most a tenth of `decay_steps`), then decay it over
        the rest of `decay_steps`.
      summary_indices: example indices whose panel (the task draws it) is written
        to TensorBoard at each evaluation.
      per_example: collect every example's index and the task's per-example values
        (`per_example/*` arrays in the evaluation result; written to a CSV by the
        results reporter, read by `evaluate.py --worst_k`).
      training_hooks: hook builders `(tensors) -> SessionRunHook` added in TRAIN,
        where `tensors` has `features`, `labels`, `predictions`, `loss` and `task`.
      evaluation_hooks: the same in EVAL (every evaluation path: train_and_evaluate,
        evaluate.py, the separate evaluator); `tensors` also has `eval_metric_ops`.
      eval_scales: EVAL and PREDICT (and so the SavedModel): run the network on the
        image resized by each scale and combine the views (DeepLab's `eval_scales`).
      add_flipped_images: also run each scale mirrored left-right (DeepLab's flag).
      precision: `'float32'`, `'mixed_bfloat16'`, `'mixed_float16'` or `'auto'` (gin's
        PRECISION, `models/precision.py`): the network computes in it, with float32
        variables and float32 outputs; mixed_float16 adds dynamic loss scaling.

    Images of any size work in every mode (`models/inference.py`): padded to the
    network's `input_multiple` and cropped back; an evaluation batch padded to one
    size (`features["size"]`) is run one image at a time at each image's own size.

    Returns:
      `model_fn(features, labels, mode, params, config) -> EstimatorSpec`, where
      `features` has `image` (uint8 [B,H,W,3]) and optionally `index` (int64 [B]),
      and `labels` is what the task's input pipeline makes. The function carries
      `model_fn.task`, so the roots can read the task it was built with.
    """
    training_hooks, evaluation_hooks = list(training_hooks or ()), list(evaluation_hooks or ())
    try:
        scales = inference.check_scales(eval_scales)
    except ValueError as error:
        raise ConfigError(f"build_model_fn.{error}") from None
    network = precision_lib.wrap(network, precision)  # Every mode, so evaluation and serving too.

    def model_fn(features, labels, mode, params, config):
        del params  # Everything is bound by the builder.
        training = mode == tf.estimator.ModeKeys.TRAIN
        seed = config.tf_random_seed if config is not None and config.tf_random_seed is not None else 0
        images = inference.normalise(features["image"])
        updates = []
        if training:
            graph = tf.compat.v1.get_default_graph()
            first_op = len(graph.get_operations())
            logits = inference.single_view(network, task, images, True, seed)
            updates = state_updates(graph, first_op)
        elif "size" in features:  # Images of different sizes, padded: one at a time.
            logits = inference.logits_per_image(
                network,
                task,
                images,
                features["size"],
                seed,
                scales,
                add_flipped_images,
                image_sizes=features.get("image_size"),
                output_like=labels if task.dense_labels and labels is not None else None,
            )
        else:
            logits = inference.multi_view(network, task, images, seed, scales, add_flipped_images)
        predictions = dict(task.predictions(logits))
        if "index" in features:
            predictions["index"] = features["index"]

        if mode == tf.estimator.ModeKeys.PREDICT:
            return tf.estimator.EstimatorSpec(
                mode,
                predictions=predictions,
                export_outputs={
                    "serving_default": tf.estimator.export.PredictOutput(task.serving_outputs(predictions))
                },
                prediction_hooks=[GpuOpCheck()],
            )

        loss = task.loss(logits, labels)
        tensors = {"features": features, "labels": labels, "predictions": predictions, "loss": loss, "task": task}
        if training:
            global_step = tf.compat.v1.train.get_or_create_global_step()
            rate = learning_rate_at(global_step, learning_rate, decay_steps, warmup_steps)
            optimizer = precision_lib.optimizer_for(tf.compat.v1.train.AdamOptimizer(rate), precision)
            scale = precision_lib.loss_scale(optimizer)
            if scale is not None:  # TensorBoard's loss_scale: mixed_float16's dynamic loss scale.
                tf.compat.v1.summary.scalar("loss_scale", scale)
            # A NaN or Inf loss fails the step before the optimizer changes any weight, so
            # no NaN weights can ever be saved; the message names the step (NAN_LOSS_MESSAGE).
            finite = tf.debugging.Assert(
                tf.math.is_finite(loss), [NAN_LOSS_MESSAGE, global_step + 1, "loss", loss], name="check_loss"
            )
            # GATE_NONE, as Keras' GradientTape: a layer's weight gradient and the gradient it
            # passes down run side by side. The v1 default (GATE_OP) holds each op's input
            # gradients until all are done, which idled the second core and blocked oneDNN's
            # fusion of a bias gradient into its convolution's: 11-13% slower here
            # (docs/benchmarks.md, mixed precision).
            with tf.control_dependencies([finite]):
                gradients = optimizer.compute_gradients(
                    tf.identity(loss), gate_gradients=tf.compat.v1.train.Optimizer.GATE_NONE
                )
            # The network's state updates (batch-norm moving averages) run with every step.
            with tf.control_dependencies(updates + [finite]):
                train_op = optimizer.apply_gradients(gradients, global_step=global_step)
            return tf.estimator.EstimatorSpec(
                mode,
                loss=loss,
                train_op=train_op,
                training_hooks=[GpuOpCheck()] + [make(tensors) for make in training_hooks],
            )

        eval_metric_ops = task.eval_metric_ops(labels, predictions, logits)
        if "index" in features:
            if summary_indices:
                frames = {"image": features["image"], "labels": labels, **predictions}
                eval_metric_ops.update(
                    summaries.subset_image_summaries(
                        features["index"],
                        summary_indices,
                        frames,
                        task.panels,
                        sizes=features.get("size"),
                        image_sizes=features.get("image_size"),
                        filenames=features.get("filename"),
                    )
                )
            if per_example:
                eval_metric_ops.update(
                    summaries.per_example_values(features["index"], task.per_example(labels, predictions, logits))
                )
                eval_metric_ops.update(summaries.per_example_statistics(task.statistics(labels, predictions, logits)))
        tensors["eval_metric_ops"] = eval_metric_ops
        return tf.estimator.EstimatorSpec(
            mode,
            loss=loss,
            predictions=predictions,
            eval_metric_ops=eval_metric_ops,
            evaluation_hooks=[GpuOpCheck()] + [make(tensors) for make in evaluation_hooks],
        )

    model_fn.task = task
    return model_fn
