"""A MobileNetV2 encoder (`tf.keras.applications`) with a small head, for fine-tuning.

The backbone is Keras' own MobileNetV2 (`include_top=False`), cut at the feature map
of the chosen output stride, so its variables carry Keras' layer and weight names
(`Conv1/kernel`, `block_3_expand_BN/moving_mean`, ...): the names of an ImageNet
weights file, which `WARM_START_FROM = '/path/mobilenet_v2_..._no_top.h5'` restores
(`core/warm_start.py`; docs/recipes.md says where the official files come from). Nothing is
downloaded: the net is built with `weights=None`.

Keras builds a functional model on placeholders of its own, with every layer up to
the top, and reads `training` from a global learning phase. So the architecture is
taken once from a model built in a throwaway graph (its layer configs, up to the cut),
and each call applies fresh layers made from those configs to the images, in the
configs' order, with `training` passed to batch norm: only the layers used are
built, every call creates its variables in the same order, and no Keras global state
is read. Batch-norm updates are collected by the model_fn as for every network.
"""

import copy
import functools
import json

import tensorflow as tf

from models.seeds import Seeds

layers = tf.keras.layers

# Keras layer whose output is the feature map at each output stride: the expansion of
# the first block of the next stage (at that stage's input resolution, 6x the channels),
# as in the TensorFlow segmentation tutorial; 32 is the no-top model's own output.
FEATURE_LAYERS = {8: "block_6_expand_relu", 16: "block_13_expand_relu", 32: "out_relu"}
_INITIALIZER_KEYS = ("kernel_initializer", "depthwise_initializer")


@functools.cache
def _backbone_config(alpha: float, output_stride: int) -> str:
    """The functional config (JSON) of Keras' MobileNetV2 cut at `FEATURE_LAYERS[output_stride]`."""
    with tf.Graph().as_default():  # Keras' own placeholders and variables go with this graph.
        full = tf.keras.applications.MobileNetV2(
            include_top=False, weights=None, alpha=alpha, input_shape=(None, None, 3)
        )
        cut = tf.keras.Model(full.input, full.get_layer(FEATURE_LAYERS[output_stride]).output)
        return json.dumps(cut.get_config())


class MobileNetV2Encoder:
    """MobileNetV2 features at `output_stride`, then a 1x1 conv + BN + ReLU and the logits.

    `MobileNetV2Encoder(alpha, output_stride)(images, num_outputs, training, seed)`;
    gin binds the constructor (`NETWORK = @mobilenet_v2()`, `mobilenet_v2.alpha = 0.35`).
    Images in [-1, 1] are MobileNetV2's own preprocessing.

    Variables: the backbone's keep Keras' names (those of a `save_weights` file of
    `tf.keras.applications.MobileNetV2`); the head's are `head_conv/*`, `head_norm/*`
    and `logits/*` (the last one, whose shape follows the number of classes, is what
    warm start skips by default).

    Args:
      alpha: MobileNetV2's width multiplier (ImageNet weights exist for 0.35, 0.5,
        0.75, 1.0, 1.3 and 1.4).
      output_stride: 8, 16 or 32; the output is [B, H / s, W / s, num_outputs]. H and W
        must be multiples of it (`input_multiple`).
      head_filters: channels of the head's 1x1 conv.
      batch_norm_momentum: the backbone's batch-norm momentum; None keeps Keras'
        0.999 (slow to follow a new dataset in a short run).
    """

    def __init__(self, alpha: float = 1.0, output_stride: int = 16, head_filters: int = 64, batch_norm_momentum=0.99):
        if output_stride not in FEATURE_LAYERS:
            raise ValueError(
                f"mobilenet_v2: output_stride must be one of {sorted(FEATURE_LAYERS)}, got {output_stride!r}"
            )
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha <= 0:
            raise ValueError(f"mobilenet_v2: alpha must be a number > 0, got {alpha!r}")
        if isinstance(head_filters, bool) or not isinstance(head_filters, int) or head_filters < 1:
            raise ValueError(f"mobilenet_v2: head_filters must be an int >= 1, got {head_filters!r}")
        self.alpha = float(alpha)
        self.output_stride = output_stride
        self.input_multiple = output_stride
        self.head_filters = head_filters
        self.batch_norm_momentum = batch_norm_momentum

    def __call__(self, images, num_outputs: int, training: bool = False, seed: int = 0):
        """Returns logits [B, H / s, W / s, num_outputs] for float images [B, H, W, 3] in [-1, 1]."""
        height, width = images.shape[1], images.shape[2]
        for size in (height, width):
            if size is not None and size % self.input_multiple:
                raise ValueError(
                    f"mobilenet_v2: image size {height}x{width} must be a multiple of "
                    f"output_stride = {self.input_multiple}"
                )
        config = json.loads(_backbone_config(self.alpha, self.output_stride))
        seeds = Seeds(seed)
        outputs = {}
        for spec in config["layers"]:
            if spec["class_name"] == "InputLayer":
                outputs[spec["name"]] = images
                continue
            layer = getattr(layers, spec["class_name"]).from_config(self._layer_config(spec, seeds))
            (node,) = spec["inbound_nodes"]  # MobileNetV2 uses each layer once.
            inputs = [outputs[name] for name, *_ in node]
            inputs = inputs[0] if len(inputs) == 1 else inputs
            if isinstance(layer, layers.BatchNormalization):
                outputs[spec["name"]] = layer(inputs, training=training)
            else:
                outputs[spec["name"]] = layer(inputs)
        output_name = config["output_layers"][0][0]
        x = outputs[output_name]
        x = layers.Conv2D(self.head_filters, 1, use_bias=False, kernel_initializer=seeds.glorot(), name="head_conv")(x)
        x = layers.BatchNormalization(momentum=0.9, name="head_norm")(x, training=training)
        x = layers.ReLU(name="head_relu")(x)
        # Linear: the task head upsamples (segmentation) or averages (classification).
        return layers.Conv2D(num_outputs, 1, kernel_initializer=seeds.glorot(), name="logits")(x)

    def _layer_config(self, spec, seeds):
        """A layer's Keras config with a seeded initializer (Keras' would draw from `random`), and
        without the dtype policy of the build that filled the cache: a layer made from a config that
        names one keeps it, so the layer takes the policy of this build (models/precision.py)."""
        config = copy.deepcopy(spec["config"])
        config.pop("dtype", None)
        for key in _INITIALIZER_KEYS:
            if key in config:
                config[key] = seeds.glorot() if _is_glorot(config[key]) else config[key]
        if spec["class_name"] == "BatchNormalization" and self.batch_norm_momentum is not None:
            config["momentum"] = self.batch_norm_momentum
        return config


def _is_glorot(initializer) -> bool:
    return isinstance(initializer, dict) and initializer.get("class_name") == "GlorotUniform"
