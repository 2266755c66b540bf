"""Augmentation ops: small objects that gin lists, each with its own random stream.

    train/make_input_fn.augmentations = [@flip_left_right(), @flip_up_down(), @brightness()]

An op is called as `op(example, seed) -> example`, where `example` is a dict with
`image` (uint8 [H, W, 3]) and, for tasks whose label is a per-pixel map, `mask`
(uint8 [H, W]); ops that move pixels move the mask with the image. Any other key
(a class label, a regression target) passes through untouched.

`seed` is a stateless seed (int64 [2]) of the op's own stream: the input pipeline
gives op number i the i-th seed of `stateless_split((SEED, position in the
stream), len(ops))`. TensorFlow's counter-based generator makes the first k seeds
of a split the same whatever the number asked for, so appending an op to the list
leaves every other op's draws unchanged (and exact resume stays bit-exact: the
draws are a function of the seed and the position only). Inserting an op in the
middle shifts the streams of the ops after it.

To add an op: a class with `__call__(self, example, seed)` using only
`tf.random.stateless_*` draws from `seed`, registered in `core/configurables.py`
(or anywhere, with `gin.external_configurable`, see docs/fork.md).
"""

import tensorflow as tf


@tf.autograph.experimental.do_not_convert
def _flip(example, flip, axis):
    out = dict(example)
    for key in ("image", "mask"):
        if key in example:
            out[key] = tf.where(flip, tf.reverse(example[key], [axis]), example[key])
    return out


class FlipLeftRight:
    """Mirrors the image (and mask) left-right with probability `probability`."""

    def __init__(self, probability: float = 0.5):
        self.probability = probability

    @tf.autograph.experimental.do_not_convert
    def __call__(self, example, seed):
        return _flip(example, tf.random.stateless_uniform([], seed) < self.probability, axis=1)


class FlipUpDown:
    """Mirrors the image (and mask) top-bottom with probability `probability`."""

    def __init__(self, probability: float = 0.5):
        self.probability = probability

    @tf.autograph.experimental.do_not_convert
    def __call__(self, example, seed):
        return _flip(example, tf.random.stateless_uniform([], seed) < self.probability, axis=0)


class Brightness:
    """Adds one uniform shift in [-max_delta, max_delta] to every pixel (clipped to [0, 255])."""

    def __init__(self, max_delta: float = 20.0):
        self.max_delta = max_delta

    @tf.autograph.experimental.do_not_convert
    def __call__(self, example, seed):
        delta = tf.random.stateless_uniform([], seed, -self.max_delta, self.max_delta)
        image = tf.cast(example["image"], tf.float32) + delta
        return dict(example, image=tf.cast(tf.clip_by_value(image, 0.0, 255.0), tf.uint8))


def apply(ops, example, seed, position):
    """Applies `ops` in order, op i drawing from stream i of `(seed, position)`."""
    ops = list(ops)
    if not ops:
        return example
    seeds = tf.random.experimental.stateless_split(tf.stack([tf.cast(seed, tf.int64), position]), len(ops))
    for i, op in enumerate(ops):
        example = op(example, seeds[i])
    return example
