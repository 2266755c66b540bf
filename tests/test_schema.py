"""The TFRecord schema round-trips, and DeepLab-style records (JPEG, minimal keys) read."""

import io

import numpy as np
import tensorflow as tf
from PIL import Image

from data import schema


def _random_pair(height=9, width=13, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    mask = rng.integers(0, 5, (height, width), dtype=np.uint8)
    mask[0, :3] = 255
    return image, mask


def test_png_round_trip_is_exact():
    image, mask = _random_pair()
    serialized = schema.make_example(image, mask, "a b.png").SerializeToString()
    decoded = schema.parse_and_decode(tf.constant(serialized))
    np.testing.assert_array_equal(decoded["image"].numpy(), image)
    np.testing.assert_array_equal(decoded["mask"].numpy(), mask)
    assert decoded["filename"].numpy() == b"a b.png"
    features = tf.train.Example.FromString(serialized).features.feature
    assert features[schema.IMAGE_HEIGHT].int64_list.value == [9]
    assert features[schema.IMAGE_WIDTH].int64_list.value == [13]
    assert features[schema.MASK_FORMAT].bytes_list.value == [b"png"]


def test_deeplab_style_jpeg_record_without_optional_keys():
    image, mask = _random_pair(seed=1)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=95)
    # Only the keys DeepLab's readers require, as its converters write them.
    example = tf.train.Example(
        features=tf.train.Features(
            feature={
                schema.IMAGE_ENCODED: tf.train.Feature(bytes_list=tf.train.BytesList(value=[buffer.getvalue()])),
                schema.MASK_ENCODED: tf.train.Feature(bytes_list=tf.train.BytesList(value=[schema.encode_png(mask)])),
            }
        )
    )
    decoded = schema.parse_and_decode(tf.constant(example.SerializeToString()))
    assert decoded["image"].shape == (9, 13, 3)
    np.testing.assert_array_equal(decoded["mask"].numpy(), mask)
    # JPEG is lossy and decoders differ in chroma upsampling: compare with PIL's
    # decoding of the same bytes, loosely.
    reference = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"), dtype=int)
    difference = np.abs(decoded["image"].numpy().astype(int) - reference)
    assert difference.mean() < 3 and difference.max() <= 16
