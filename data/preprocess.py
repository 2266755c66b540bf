"""Images of any size: DeepLab's resize, random scale, pad and crop (training) and padding (evaluation).

Training follows DeepLab's `input_preprocess.preprocess_image_and_label`:

1. resize into a range (`min_resize_value`, `max_resize_value`, `resize_factor`;
   DeepLab's `preprocess_utils.resize_to_range`), if set;
2. scale by a random factor in `[min_scale_factor, max_scale_factor]` (a multiple of
   `scale_factor_step_size` above the minimum when that is > 0);
3. pad at the bottom and right up to the crop size, the image with `PAD_PIXEL` (about
   the mean, DeepLab's 127.5) and the mask with the ignore label;
4. crop `crop_height` x `crop_width` at a random offset.

The crop size is what `IMAGE_HEIGHT`/`IMAGE_WIDTH` mean for training. Every draw is
stateless, from its own stream of `(SEED, position in the stream)` (separate from
the augmentation ops' streams), so training stays deterministic and exact resume
stays bit-exact. With the defaults (no resize, scale 1) an image of the crop size
passes through unchanged, so fixed-size datasets train exactly as before.

Evaluation pads every image to one fixed size (the largest of the split unless
set), the mask with the ignore label, and records each image's own size in the
features; the model_fn then runs the network on each image at its own size (see
`models/inference.py`), so no padded pixel is counted and the result does not
depend on the batch size.
"""

import math

import tensorflow as tf

from common.errors import DataError

# The uint8 value padding takes: about the mean pixel (DeepLab pads with 127.5), so
# it is 0.004 after the model's scaling to [-1, 1].
PAD_PIXEL = 128
# Draws of this module come from the augmentation key folded with this constant,
# so they never share a stream with an augmentation op.
_STREAM = 0x5CA1E


def resize_to_range(height, width, min_size=None, max_size=None, factor=None):
    """DeepLab's `resize_to_range` size: the new (height, width), int32 scalars.

    The shorter side becomes `min_size` (if set) unless the longer side would then
    exceed `max_size`, in which case the longer side becomes `max_size`; aspect
    ratio kept. With `factor`, each side is rounded up to a multiple of `factor`
    plus one (DeepLab's convention for its align-corners networks).
    """
    height_f, width_f = tf.cast(height, tf.float64), tf.cast(width, tf.float64)
    size = tf.stack([height, width])
    if min_size is not None:
        scale = float(min_size) / tf.minimum(height_f, width_f)
        size = tf.cast(tf.floor(tf.stack([height_f, width_f]) * scale), tf.int32)
    if max_size is not None:
        small_scale = float(max_size) / tf.maximum(height_f, width_f)
        small = tf.cast(tf.floor(tf.stack([height_f, width_f]) * small_scale), tf.int32)
        size = tf.where(tf.reduce_max(size) > max_size, small, size)
    if factor is not None:
        size += (factor - (size - 1) % factor) % factor
    return size[0], size[1]


def resized_size(height: int, width: int, min_size=None, max_size=None, factor=None):
    """`resize_to_range` in plain Python, for sizes known before the graph (the same arithmetic)."""
    size = [height, width]
    if min_size is not None:
        scale = float(min_size) / min(height, width)
        size = [math.floor(height * scale), math.floor(width * scale)]
    if max_size is not None and max(size) > max_size:
        scale = float(max_size) / max(height, width)
        size = [math.floor(height * scale), math.floor(width * scale)]
    if factor is not None:
        size = [side + (factor - (side - 1) % factor) % factor for side in size]
    return int(size[0]), int(size[1])


def resize_bilinear(images, size):
    """Bilinear resize of [B, H, W, C] with corners aligned (DeepLab's convention), float32.

    The raw op: TensorFlow's v1 wrapper of the same op prints a deprecation warning.
    """
    return tf.raw_ops.ResizeBilinear(images=images, size=size, align_corners=True)


def resize(example, size):
    """Resizes `image` bilinearly and `mask` (if any) to nearest labels, align-corners as DeepLab."""
    out = dict(example)
    image = resize_bilinear(tf.cast(example["image"], tf.float32)[None], size)
    out["image"] = tf.cast(tf.clip_by_value(tf.round(image[0]), 0.0, 255.0), tf.uint8)
    if "mask" in example:
        mask = tf.raw_ops.ResizeNearestNeighbor(images=example["mask"][None, :, :, None], size=size, align_corners=True)
        out["mask"] = mask[0, :, :, 0]
    return out


@tf.autograph.experimental.do_not_convert
def pad_to(example, height, width, ignore_label):
    """Pads `image` with PAD_PIXEL and `mask` with `ignore_label` at the bottom and right.

    Each of them, when present, is padded from its own size, so an image and a mask of
    different sizes (an evaluation resize) each pad to the size asked.
    """
    out = dict(example)
    for key, fill, channels in (("image", PAD_PIXEL, [[0, 0]]), ("mask", ignore_label, [])):
        if key in example:
            shape = tf.shape(example[key])
            paddings = [[0, height - shape[0]], [0, width - shape[1]]] + channels
            out[key] = tf.pad(example[key], paddings, constant_values=tf.cast(fill, example[key].dtype))
    return out


class ScaleAndCrop:
    """DeepLab's training preprocessing, as a gin choice (`train/make_input_fn.preprocess`).

    Args:
      min_resize_value, max_resize_value, resize_factor: resize into this range
        first (None: no resize), as DeepLab's flags of the same names.
      min_scale_factor, max_scale_factor, scale_factor_step_size: the random scale
        (DeepLab's flags of the same names; step 0 draws from the continuous range).
    """

    def __init__(
        self,
        min_resize_value=None,
        max_resize_value=None,
        resize_factor=None,
        min_scale_factor: float = 1.0,
        max_scale_factor: float = 1.0,
        scale_factor_step_size: float = 0.0,
    ):
        if not 0 < min_scale_factor <= max_scale_factor:
            raise DataError(
                f"scale_and_crop: need 0 < min_scale_factor <= max_scale_factor, got {min_scale_factor}, "
                f"{max_scale_factor}"
            )
        if scale_factor_step_size < 0:
            raise DataError(f"scale_and_crop: scale_factor_step_size must be >= 0, got {scale_factor_step_size}")
        for name, value in (("min_resize_value", min_resize_value), ("max_resize_value", max_resize_value)):
            if value is not None and value < 1:
                raise DataError(f"scale_and_crop: {name} must be >= 1 or None, got {value}")
        self.min_resize_value = min_resize_value
        self.max_resize_value = max_resize_value
        self.resize_factor = resize_factor
        self.min_scale_factor = min_scale_factor
        self.max_scale_factor = max_scale_factor
        self.scale_factor_step_size = scale_factor_step_size

    @tf.autograph.experimental.do_not_convert
    def resize_into_range(self, example):
        """Step 1 (also applied by evaluation when set, as DeepLab does)."""
        if self.min_resize_value is None and self.max_resize_value is None:
            return example
        shape = tf.shape(example["image"])
        size = resize_to_range(shape[0], shape[1], self.min_resize_value, self.max_resize_value, self.resize_factor)
        return resize(example, tf.stack(size))

    def random_scale(self, seed):
        """DeepLab's `get_random_scale`: a float32 scalar drawn from `seed`."""
        low, high, step = self.min_scale_factor, self.max_scale_factor, self.scale_factor_step_size
        if low == high:
            return tf.constant(low, tf.float32)
        if step == 0:
            return tf.random.stateless_uniform([], seed, low, high)
        count = int(round((high - low) / step)) + 1
        choice = tf.random.stateless_uniform([], seed, 0, count, dtype=tf.int32)
        return tf.cast(low + tf.cast(choice, tf.float64) * step, tf.float32)

    @tf.autograph.experimental.do_not_convert
    def __call__(self, example, crop_height: int, crop_width: int, ignore_label: int, key):
        """Steps 1-4 on one example; `key` is the int64 [2] stateless key of its stream position."""
        seeds = tf.random.experimental.stateless_split(tf.random.experimental.stateless_fold_in(key, _STREAM), 2)
        example = self.resize_into_range(example)
        if self.min_scale_factor != 1.0 or self.max_scale_factor != 1.0:
            shape = tf.cast(tf.shape(example["image"])[:2], tf.float32)
            scaled = tf.cast(tf.round(shape * self.random_scale(seeds[0])), tf.int32)
            example = resize(example, tf.maximum(scaled, 1))
        shape = tf.shape(example["image"])
        example = pad_to(example, tf.maximum(shape[0], crop_height), tf.maximum(shape[1], crop_width), ignore_label)
        shape = tf.shape(example["image"])
        limits = tf.stack([shape[0] - crop_height + 1, shape[1] - crop_width + 1])
        offset = tf.random.stateless_uniform([2], seeds[1], 0, tf.int32.max, dtype=tf.int32) % limits
        out = dict(example)
        out["image"] = tf.slice(example["image"], [offset[0], offset[1], 0], [crop_height, crop_width, 3])
        if "mask" in example:
            out["mask"] = tf.slice(example["mask"], offset, [crop_height, crop_width])
        return out
