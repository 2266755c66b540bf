"""The TFRecord schema round-trips, and DeepLab-style records (JPEG, minimal keys) read."""

import io

import numpy as np
import pytest
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
    serialized = schema.make_example(image, "a b.png", mask=mask).SerializeToString()
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


def _features(example):
    return tf.train.Example.FromString(example.SerializeToString()).features.feature


def test_class_label_and_regression_target_records():
    image, _ = _random_pair()
    classified = _features(schema.make_example(image, "c.png", class_label=np.int64(2)))
    assert classified[schema.CLASS_LABEL].int64_list.value == [2]
    regressed = _features(schema.make_example(image, "r.png", target=np.array([0.25, -3.5])))
    assert list(regressed[schema.REGRESSION_TARGET].float_list.value) == [0.25, -3.5]
    for features in (classified, regressed):
        assert schema.MASK_ENCODED not in features and schema.MASK_FORMAT not in features
        assert features[schema.IMAGE_HEIGHT].int64_list.value == [9]
    assert schema.CLASS_LABEL not in regressed and schema.REGRESSION_TARGET not in classified
    parsed = tf.io.parse_single_example(
        schema.make_example(image, "c.png", class_label=1).SerializeToString(),
        {schema.CLASS_LABEL: tf.io.FixedLenFeature((), tf.int64)},
    )
    assert int(parsed[schema.CLASS_LABEL]) == 1


def test_an_example_has_exactly_one_well_formed_label():
    image, mask = _random_pair()
    with pytest.raises(ValueError, match="x.png: .*exactly one of mask, class_label, target; got none"):
        schema.make_example(image, "x.png")
    with pytest.raises(ValueError, match="got mask, class_label"):
        schema.make_example(image, "x.png", mask=mask, class_label=1)
    with pytest.raises(TypeError, match="filename must be a str.*mask="):
        schema.make_example(image, mask, "x.png")  # The old positional call.
    for bad in (1.0, True, -1, "2"):
        with pytest.raises(ValueError, match="x.png: class_label"):
            schema.make_example(image, "x.png", class_label=bad)
    for bad, message in ((0.5, "non-empty sequence"), ([], "non-empty sequence"), ([1.0, np.nan], "not finite")):
        with pytest.raises(ValueError, match=f"x.png: target .*{message}"):
            schema.make_example(image, "x.png", target=bad)
