"""The TFRecord schema: DeepLab's keys, PNG (or JPEG) image and PNG mask.

Records written by DeepLab's own converters (`build_voc2012_data.py` and friends)
read as-is, and records written here read in DeepLab.
"""

import io

import numpy as np
from PIL import Image

IGNORE_LABEL = 255

IMAGE_ENCODED = "image/encoded"
IMAGE_FORMAT = "image/format"
IMAGE_FILENAME = "image/filename"
IMAGE_HEIGHT = "image/height"
IMAGE_WIDTH = "image/width"
IMAGE_CHANNELS = "image/channels"
MASK_ENCODED = "image/segmentation/class/encoded"
MASK_FORMAT = "image/segmentation/class/format"


def encode_png(array: np.ndarray) -> bytes:
    """Encodes a uint8 HxW or HxWx3 array as PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def make_example(image, mask, filename: str, image_format: str = "png"):
    """Builds a `tf.train.Example` for one image and its mask.

    Args:
      image: uint8 array [H, W, 3], or already-encoded bytes in `image_format`.
      mask: uint8 array [H, W] of class ids (255 = ignore), or PNG bytes.
      filename: the source file's name, kept so errors can name it.
      image_format: "png" or "jpeg"; used only when `image` is already encoded.

    Returns:
      A `tf.train.Example`.
    """
    import tensorflow as tf  # Deferred: the writers are also used by light tools.

    if isinstance(image, np.ndarray):
        height, width = image.shape[:2]
        image_bytes, image_format = encode_png(image), "png"
    else:
        image_bytes = image
        with Image.open(io.BytesIO(image)) as decoded:
            width, height = decoded.size
    mask_bytes = encode_png(mask) if isinstance(mask, np.ndarray) else mask

    def _bytes(value):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    def _int(value):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))

    return tf.train.Example(
        features=tf.train.Features(
            feature={
                IMAGE_ENCODED: _bytes(image_bytes),
                IMAGE_FILENAME: _bytes(filename.encode("utf-8")),
                IMAGE_FORMAT: _bytes(image_format.encode("utf-8")),
                IMAGE_HEIGHT: _int(height),
                IMAGE_WIDTH: _int(width),
                IMAGE_CHANNELS: _int(3),
                MASK_ENCODED: _bytes(mask_bytes),
                MASK_FORMAT: _bytes(b"png"),
            }
        )
    )


def feature_spec():
    """The parsing spec; defaults let DeepLab records without optional keys parse."""
    import tensorflow as tf

    return {
        IMAGE_ENCODED: tf.io.FixedLenFeature((), tf.string),
        IMAGE_FILENAME: tf.io.FixedLenFeature((), tf.string, default_value=""),
        IMAGE_FORMAT: tf.io.FixedLenFeature((), tf.string, default_value="png"),
        IMAGE_HEIGHT: tf.io.FixedLenFeature((), tf.int64, default_value=0),
        IMAGE_WIDTH: tf.io.FixedLenFeature((), tf.int64, default_value=0),
        MASK_ENCODED: tf.io.FixedLenFeature((), tf.string),
    }


def parse_and_decode(serialized):
    """Parses one serialized Example into decoded tensors (graph-friendly).

    Returns:
      A dict with `image` uint8 [H, W, 3], `mask` uint8 [H, W] and `filename`.
    """
    import tensorflow as tf

    parsed = tf.io.parse_single_example(serialized, feature_spec())
    image = tf.io.decode_image(parsed[IMAGE_ENCODED], channels=3, expand_animations=False)
    mask = tf.io.decode_png(parsed[MASK_ENCODED], channels=1)[:, :, 0]
    return {"image": image, "mask": mask, "filename": parsed[IMAGE_FILENAME]}
