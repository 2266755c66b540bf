"""The serving signature: `image` uint8 [N, H, W, 3] in, `classes` and `probabilities` out."""

import tensorflow as tf


def serving_input_receiver_fn(image_height: int, image_width: int):
    """A `serving_input_receiver_fn` for `export_saved_model` and the exporters.

    The SavedModel's `serving_default` signature takes `image`, uint8 [N, H, W, 3]
    at the training size, and returns `classes` (int32 [N, H, W]) and
    `probabilities` (float32 [N, H, W, C]).
    """

    def receiver_fn():
        # Built when Estimator calls it, inside its export graph (placeholders need a graph).
        image = tf.compat.v1.placeholder(tf.uint8, [None, image_height, image_width, 3], name="image")
        return tf.estimator.export.ServingInputReceiver({"image": image}, {"image": image})

    return receiver_fn
