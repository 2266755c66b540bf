"""The TFRecord schema: DeepLab's keys, PNG (or JPEG) image, and one label per example.

Segmentation stores a PNG mask under DeepLab's keys: records written by DeepLab's
own converters (`build_voc2012_data.py` and friends) read as-is, and records
written here read in DeepLab. Classification stores the class id under TF-slim's
`image/class/label`; regression stores its target(s) as a float list under
`image/regression/target`.
"""

import io

import numpy as np
from PIL import Image

from common.errors import DataError

IMAGE_ENCODED = "image/encoded"
IMAGE_FORMAT = "image/format"
IMAGE_FILENAME = "image/filename"
IMAGE_HEIGHT = "image/height"
IMAGE_WIDTH = "image/width"
IMAGE_CHANNELS = "image/channels"
MASK_ENCODED = "image/segmentation/class/encoded"
MASK_FORMAT = "image/segmentation/class/format"
# Classification: the class id, an int64 scalar (TF-slim's and tensorflow/models' key).
CLASS_LABEL = "image/class/label"
# Regression: the target(s), a float list as long as the number of targets.
REGRESSION_TARGET = "image/regression/target"


def encode_png(array: np.ndarray) -> bytes:
    """Encodes a uint8 HxW or HxWx3 array as PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def make_example(image, filename: str, image_format: str = "png", *, mask=None, class_label=None, target=None):
    """Builds a `tf.train.Example` for one image and exactly one label.

    The label says the task: a `mask` (segmentation, DeepLab's keys), a
    `class_label` (classification, `image/class/label` as TF-slim writes it) or a
    `target` (regression, `image/regression/target`, one float per target).

    Args:
      image: uint8 array [H, W, 3], or already-encoded bytes in `image_format`.
      filename: the source file's name, kept so errors can name it.
      image_format: "png" or "jpeg"; used only when `image` is already encoded.
      mask: uint8 array [H, W] of class ids (255 = ignore), or PNG bytes.
      class_label: the class id, a non-negative int.
      target: the regression target(s), a non-empty sequence of finite floats.

    Returns:
      A `tf.train.Example`.

    Raises:
      TypeError: `filename` is not a string (e.g. a mask passed positionally).
      ValueError: not exactly one label, or a bad class label or target; names the file.
    """
    import tensorflow as tf  # Deferred: the writers are also used by light tools.

    if not isinstance(filename, str):
        raise TypeError(
            f"make_example: filename must be a str, got {type(filename).__name__} "
            "(labels are keyword arguments: mask=, class_label= or target=)"
        )
    labels = {"mask": mask, "class_label": class_label, "target": target}
    given = [name for name, value in labels.items() if value is not None]
    if len(given) != 1:
        raise DataError(
            f"{filename}: an example needs exactly one of mask, class_label, target; got {', '.join(given) or 'none'}"
        )
    if isinstance(image, np.ndarray):
        height, width = image.shape[:2]
        image_bytes, image_format = encode_png(image), "png"
    else:
        image_bytes = image
        with Image.open(io.BytesIO(image)) as decoded:
            width, height = decoded.size

    def _bytes(value):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    def _int(value):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))

    feature = {
        IMAGE_ENCODED: _bytes(image_bytes),
        IMAGE_FILENAME: _bytes(filename.encode("utf-8")),
        IMAGE_FORMAT: _bytes(image_format.encode("utf-8")),
        IMAGE_HEIGHT: _int(height),
        IMAGE_WIDTH: _int(width),
        IMAGE_CHANNELS: _int(3),
    }
    if mask is not None:
        feature[MASK_ENCODED] = _bytes(encode_png(mask) if isinstance(mask, np.ndarray) else mask)
        feature[MASK_FORMAT] = _bytes(b"png")
    elif class_label is not None:
        feature[CLASS_LABEL] = _int(check_class_label(class_label, filename))
    else:
        values = check_target(target, filename)
        feature[REGRESSION_TARGET] = tf.train.Feature(float_list=tf.train.FloatList(value=values.tolist()))
    return tf.train.Example(features=tf.train.Features(feature=feature))


def check_class_label(class_label, filename: str = "") -> int:
    """The class label as an int; a bool, a float or a negative value is refused, naming the file."""
    if isinstance(class_label, (bool, np.bool_)) or not isinstance(class_label, (int, np.integer)):
        raise DataError(f"{filename}: class_label must be an int, got {class_label!r}")
    if class_label < 0:
        raise DataError(f"{filename}: class_label must be >= 0, got {class_label}")
    return int(class_label)


def check_target(target, filename: str = "") -> np.ndarray:
    """The regression target as float32 [T]: a scalar, an empty or a non-finite target is refused."""
    values = np.asarray(target, dtype=np.float32)
    if values.ndim != 1 or values.size == 0:
        raise DataError(f"{filename}: target must be a non-empty sequence of floats, got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise DataError(f"{filename}: target is not finite: {values.tolist()}")
    return values


def image_features():
    """The parsing spec of the image keys every task reads (the label's come from the task)."""
    import tensorflow as tf

    return {
        IMAGE_ENCODED: tf.io.FixedLenFeature((), tf.string),
        IMAGE_FILENAME: tf.io.FixedLenFeature((), tf.string, default_value=""),
    }


def feature_spec():
    """The segmentation parsing spec; defaults let DeepLab records without optional keys parse.

    Classification and regression records have `CLASS_LABEL` or `REGRESSION_TARGET`
    instead of `MASK_ENCODED`; their tasks parse those keys themselves.
    """
    import tensorflow as tf

    return {
        **image_features(),
        IMAGE_FORMAT: tf.io.FixedLenFeature((), tf.string, default_value="png"),
        IMAGE_HEIGHT: tf.io.FixedLenFeature((), tf.int64, default_value=0),
        IMAGE_WIDTH: tf.io.FixedLenFeature((), tf.int64, default_value=0),
        MASK_ENCODED: tf.io.FixedLenFeature((), tf.string),
    }


def decode_image(encoded):
    """The one image decoder: encoded bytes (JPEG, PNG, BMP, GIF) -> RGB uint8 [H, W, 3].

    Training, evaluation (`data/input.py`) and `tools/predict.py` all decode through
    this (predict.py by way of `images.read_image_file`), so a JPEG gives the same pixels
    everywhere (PIL's and TensorFlow's JPEG decoders differ by a few levels on most
    pixels). What it does to each kind of image is the rule every path follows:
    grey is replicated to R, G and B; alpha (grey+alpha, RGBA) is dropped, not
    composited; a palette image gives its palette colours; 16-bit samples become
    8-bit by their high byte (`v >> 8`); a GIF gives its first frame. It ignores EXIF
    orientation and misreads some BMPs (a palette BMP's indices come out as grey
    levels), so the converters store an image file's pixels upright, as JPEG or PNG
    only: `data/images.py` reads files (EXIF orientation applied) for them and for
    tools/predict.py.
    """
    import tensorflow as tf

    return tf.io.decode_image(encoded, channels=3, expand_animations=False)


def parse_and_decode(serialized):
    """Parses one serialized segmentation Example into decoded tensors (graph-friendly).

    Returns:
      A dict with `image` uint8 [H, W, 3], `mask` uint8 [H, W] and `filename`.
    """
    import tensorflow as tf

    parsed = tf.io.parse_single_example(serialized, feature_spec())
    image = decode_image(parsed[IMAGE_ENCODED])
    mask = tf.io.decode_png(parsed[MASK_ENCODED], channels=1)[:, :, 0]
    return {"image": image, "mask": mask, "filename": parsed[IMAGE_FILENAME]}
