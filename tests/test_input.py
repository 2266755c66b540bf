"""The input pipeline: subsets by index (filtered before decoding), batching, determinism."""

import numpy as np
import pytest
import tensorflow as tf

from data import input as data_input
from data import schema, synthetic
from tests.conftest import TINY_SIZE, TINY_VAL


def _collect(input_fn):
    indices, images, masks, batch_sizes = [], [], [], []
    for features, labels in input_fn():
        batch_sizes.append(int(labels.shape[0]))
        indices.extend(features["index"].numpy().tolist())
        images.extend(features["image"].numpy())
        masks.extend(labels.numpy())
    return indices, np.array(images), np.array(masks), batch_sizes


def _val_fn(root, **kwargs):
    kwargs.setdefault("batch_size", 3)
    return data_input.make_input_fn(
        str(root / "val-*.tfrecord"), image_height=TINY_SIZE, image_width=TINY_SIZE, **kwargs
    )


def test_eval_keeps_order_and_partial_last_batch(tiny_dataset):
    indices, images, masks, batch_sizes = _collect(_val_fn(tiny_dataset))
    assert indices == list(range(TINY_VAL))
    assert batch_sizes == [3, 3, 1]
    for i in (0, TINY_VAL - 1):
        image, mask = synthetic.make_example(1, "val", i, TINY_SIZE, TINY_SIZE)
        np.testing.assert_array_equal(images[i], image)
        np.testing.assert_array_equal(masks[i], mask)
    assert masks.dtype == np.int32


def test_subset_picks_exactly_the_requested_indices(tiny_dataset):
    _, all_images, _, _ = _collect(_val_fn(tiny_dataset))
    indices, images, _, batch_sizes = _collect(_val_fn(tiny_dataset, subset=[5, 0, 3, 3]))
    assert indices == [0, 3, 5]
    assert batch_sizes == [3]
    np.testing.assert_array_equal(images, all_images[[0, 3, 5]])


def test_subset_from_string_and_file(tmp_path):
    ids = tmp_path / "ids.txt"
    ids.write_text("17\n3, 42\n")
    assert data_input.parse_subset("3,17,42").tolist() == [3, 17, 42]
    assert data_input.parse_subset(f"@{ids}").tolist() == [3, 17, 42]
    with pytest.raises(ValueError, match="not an integer"):
        data_input.parse_subset("3,x")
    with pytest.raises(ValueError, match="negative index -2"):
        data_input.parse_subset([-2, 1])


def test_subset_decodes_nothing_else(tmp_path):
    """Example 2 cannot be decoded: a subset without it must still read fine."""
    examples = []
    for i in range(5):
        example = schema.make_example(*synthetic.make_example(2, "val", i, 16, 16), f"{i}.png")
        if i == 2:
            example.features.feature[schema.IMAGE_ENCODED].bytes_list.value[0] = b"not an image at all"
        examples.append(example.SerializeToString())
    with tf.io.TFRecordWriter(str(tmp_path / "val-0.tfrecord")) as f:
        for record in examples:
            f.write(record)
    pattern = str(tmp_path / "val-*.tfrecord")

    subset_fn = data_input.make_input_fn(pattern, 2, 16, 16, subset=[0, 3, 4])
    indices, _, _, _ = _collect(subset_fn)
    assert indices == [0, 3, 4]
    with pytest.raises(tf.errors.InvalidArgumentError):
        _collect(data_input.make_input_fn(pattern, 2, 16, 16))


def test_training_stream_is_a_function_of_the_seed(tiny_dataset):
    def first_batches(seed):
        fn = data_input.make_input_fn(
            str(tiny_dataset / "train-*.tfrecord"), 4, TINY_SIZE, TINY_SIZE, training=True, seed=seed
        )
        return [(f["index"].numpy(), f["image"].numpy()) for f, _ in fn().take(5)]

    a, b, c = first_batches(7), first_batches(7), first_batches(8)
    for (index_a, image_a), (index_b, image_b) in zip(a, b):
        np.testing.assert_array_equal(index_a, index_b)
        np.testing.assert_array_equal(image_a, image_b)
    assert any(not np.array_equal(x[0], y[0]) or not np.array_equal(x[1], y[1]) for x, y in zip(a, c))
    # Every batch is full in training (the partial one is dropped, the stream repeats).
    assert all(len(index) == 4 for index, _ in a)


def test_no_files_names_the_pattern(tmp_path):
    with pytest.raises(ValueError, match="no files match the pattern .*nothing-"):
        data_input.make_input_fn(str(tmp_path / "nothing-*.tfrecord"), 2, 8, 8)


def test_wrong_image_size_names_the_file(tiny_dataset):
    fn = data_input.make_input_fn(str(tiny_dataset / "val-*.tfrecord"), 2, TINY_SIZE + 1, TINY_SIZE)
    with pytest.raises(tf.errors.InvalidArgumentError, match="val_0.png"):
        _collect(fn)


def test_mask_size_differs_from_image(tmp_path):
    image, mask = synthetic.make_example(0, "val", 0, 16, 16)
    record = schema.make_example(image, mask[:8], "odd.png").SerializeToString()
    with tf.io.TFRecordWriter(str(tmp_path / "odd-0.tfrecord")) as f:
        f.write(record)
    fn = data_input.make_input_fn(str(tmp_path / "odd-*.tfrecord"), 1, 16, 16)
    with pytest.raises(tf.errors.InvalidArgumentError, match="mask size differs.*odd.png"):
        _collect(fn)
