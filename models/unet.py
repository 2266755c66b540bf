"""A small U-Net built from `tf.keras.layers`, usable inside an Estimator `model_fn`.

BatchNormalization trains this net several times faster than GroupNormalization
(and each step is about twice as cheap on CPU: measured with `bench`-style Keras
fits on the synthetic set). In a graph-mode `model_fn` Keras
layers keep their moving-average updates in `layer.updates`, not in the UPDATE_OPS
collection; the model_fn finds and runs them (`models.model_fn.state_updates`), so
a network never has to know that rule.
"""

import tensorflow as tf

from models.seeds import Seeds

layers = tf.keras.layers


def _conv_block(x, filters, name, training, seeds):
    for i in range(2):
        x = layers.Conv2D(
            filters, 3, padding="same", use_bias=False, kernel_initializer=seeds.glorot(), name=f"{name}_conv{i}"
        )(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"{name}_norm{i}")(x, training=training)
        x = layers.Activation("relu", name=f"{name}_relu{i}")(x)
    return x


class UNet:
    """A U-Net: `UNet(base_filters, depth)(images, num_outputs, training, seed)`.

    Gin binds the constructor (`build_model_fn.network = @unet()`, with
    `unet.base_filters` and `unet.depth`); the model_fn calls the object.

    Args:
      base_filters: filters of the first level; doubled at each level down.
      depth: number of 2x downsamplings; H and W must be divisible by 2**depth.
    """

    def __init__(self, base_filters: int = 16, depth: int = 3):
        if base_filters < 1 or depth < 1:
            raise ValueError(f"unet: base_filters and depth must be >= 1, got {base_filters} and {depth}")
        self.base_filters = base_filters
        self.depth = depth
        self.output_stride = 1
        self.input_multiple = 2**depth  # H and W must be multiples of it (the caller pads to it).

    def __call__(self, images, num_outputs: int, training: bool = False, seed: int = 0):
        """Returns logits [B, H, W, num_outputs] for float images [B, H, W, 3] in about [-1, 1].

        In training, batch statistics are used and the moving-average updates are
        created (the model_fn collects and runs them). The initial weights are a
        function of `seed` alone.
        """
        base_filters, depth = self.base_filters, self.depth
        height, width = images.shape[1], images.shape[2]
        if height is not None and width is not None and (height % 2**depth or width % 2**depth):
            raise ValueError(f"image size {height}x{width} must be divisible by 2**depth = {2**depth}")
        skips, seeds = [], Seeds(seed)
        x = images
        for level in range(depth):
            x = _conv_block(x, base_filters * 2**level, f"down{level}", training, seeds)
            skips.append(x)
            x = layers.MaxPool2D(2, name=f"pool{level}")(x)
        x = _conv_block(x, base_filters * 2**depth, "bottom", training, seeds)
        for level in reversed(range(depth)):
            x = layers.Conv2DTranspose(
                base_filters * 2**level, 2, strides=2, kernel_initializer=seeds.glorot(), name=f"up{level}"
            )(x)
            x = layers.Concatenate(name=f"skip{level}")([x, skips[level]])
            x = _conv_block(x, base_filters * 2**level, f"up{level}", training, seeds)
        return layers.Conv2D(num_outputs, 1, kernel_initializer=seeds.glorot(), name="logits")(x)
