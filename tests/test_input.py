"""The input pipeline: subsets by index (filtered before decoding), batching, determinism."""

import numpy as np
import pytest
import tensorflow as tf

from common.errors import DataError
from data import input as data_input
from data import schema, synthetic
from data.preprocess import ScaleAndCrop
from models.segmentation import Segmentation
from tests.conftest import TINY_SIZE, TINY_TRAIN, TINY_VAL


def _collect(input_fn):
    indices, images, masks, batch_sizes = [], [], [], []
    for features, labels in input_fn():
        batch_sizes.append(int(labels.shape[0]))
        indices.extend(features["index"].numpy().tolist())
        images.extend(features["image"].numpy())
        masks.extend(labels.numpy())
    return indices, np.array(images), np.array(masks), batch_sizes


SEGMENTATION = Segmentation(4)


def _val_fn(root, **kwargs):
    kwargs.setdefault("batch_size", 3)
    kwargs.setdefault("task", SEGMENTATION)
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


def test_evaluation_reads_without_autotuning_and_training_with_it(tiny_dataset):
    """A kept EVAL graph re-creates its iterator at every evaluation; with tf.data's autotuning
    on, that stalled now and then for 0.9 to 5 s (data/input.py `_eval_options`)."""
    train_fn = data_input.make_input_fn(
        str(tiny_dataset / "train-*.tfrecord"), 2, TINY_SIZE, TINY_SIZE, SEGMENTATION, training=True
    )
    assert train_fn().options().autotune.enabled is not False
    assert _val_fn(tiny_dataset)().options().autotune.enabled is False


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
    with pytest.raises(DataError, match="not an integer"):
        data_input.parse_subset("3,x")
    with pytest.raises(DataError, match="negative index -2"):
        data_input.parse_subset([-2, 1])


def test_subset_decodes_nothing_else(tmp_path):
    """Example 2 cannot be decoded: a subset without it must still read fine."""
    examples = []
    for i in range(5):
        image, mask = synthetic.make_example(2, "val", i, 16, 16)
        example = schema.make_example(image, f"{i}.png", mask=mask)
        if i == 2:
            example.features.feature[schema.IMAGE_ENCODED].bytes_list.value[0] = b"not an image at all"
        examples.append(example.SerializeToString())
    with tf.io.TFRecordWriter(str(tmp_path / "val-0.tfrecord")) as f:
        for record in examples:
            f.write(record)
    pattern = str(tmp_path / "val-*.tfrecord")

    subset_fn = data_input.make_input_fn(pattern, 2, 16, 16, SEGMENTATION, subset=[0, 3, 4])
    indices, _, _, _ = _collect(subset_fn)
    assert indices == [0, 3, 4]
    with pytest.raises(tf.errors.InvalidArgumentError):
        _collect(data_input.make_input_fn(pattern, 2, 16, 16, SEGMENTATION))


def test_training_stream_is_a_function_of_the_seed(tiny_dataset):
    def first_batches(seed):
        fn = data_input.make_input_fn(
            str(tiny_dataset / "train-*.tfrecord"), 4, TINY_SIZE, TINY_SIZE, SEGMENTATION, training=True, seed=seed
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
    with pytest.raises(DataError, match="no files match the pattern .*nothing-"):
        data_input.make_input_fn(str(tmp_path / "nothing-*.tfrecord"), 2, 8, 8, SEGMENTATION)


def test_image_larger_than_the_evaluation_size_names_the_file(tiny_dataset):
    fn = data_input.make_input_fn(
        str(tiny_dataset / "val-*.tfrecord"),
        2,
        TINY_SIZE,
        TINY_SIZE,
        SEGMENTATION,
        eval_size=(TINY_SIZE - 1, TINY_SIZE),
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match="does not fit the evaluation size.*val_0.png"):
        _collect(fn)


def test_mask_size_differs_from_image(tmp_path):
    image, mask = synthetic.make_example(0, "val", 0, 16, 16)
    record = schema.make_example(image, "odd.png", mask=mask[:8]).SerializeToString()
    with tf.io.TFRecordWriter(str(tmp_path / "odd-0.tfrecord")) as f:
        f.write(record)
    fn = data_input.make_input_fn(str(tmp_path / "odd-*.tfrecord"), 1, 16, 16, SEGMENTATION)
    with pytest.raises(tf.errors.InvalidArgumentError, match="mask size differs.*odd.png"):
        _collect(fn)


class _DrawOnly:
    """An augmentation that draws from its stream but changes nothing."""

    def __call__(self, example, seed):
        return dict(example, image=example["image"] + tf.cast(tf.random.stateless_uniform([], seed) > 2.0, tf.uint8))


def _train_batches(dataset, augmentations, count=4, task=SEGMENTATION, preprocess=None):
    fn = data_input.make_input_fn(
        str(dataset / "train-*.tfrecord"),
        4,
        TINY_SIZE,
        TINY_SIZE,
        task,
        training=True,
        seed=3,
        augmentations=augmentations,
        preprocess=preprocess,
    )
    return [(f["image"].numpy(), labels.numpy()) for f, labels in fn().take(count)]


def test_appending_an_augmentation_leaves_the_others_draws_unchanged(tiny_dataset):
    from data.augment import FlipLeftRight, FlipUpDown

    base = _train_batches(tiny_dataset, [FlipLeftRight(), FlipUpDown()])
    appended = _train_batches(tiny_dataset, [FlipLeftRight(), FlipUpDown(), _DrawOnly()])
    swapped = _train_batches(tiny_dataset, [FlipUpDown(), FlipLeftRight()])  # Streams follow positions.
    plain = _train_batches(tiny_dataset, [])
    for (image, mask), (image2, mask2) in zip(base, appended):
        np.testing.assert_array_equal(image, image2)
        np.testing.assert_array_equal(mask, mask2)
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(base, swapped))
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(base, plain))


class _InvertIfBright:
    """A fork's augmentation written with a Python `if` on a tensor: only AutoGraph makes it a graph."""

    def __call__(self, example, seed):
        image = example["image"]
        if tf.reduce_mean(tf.cast(image, tf.float32)) > 0.0:
            image = 255 - image
        return dict(example, image=image)


class _InvertingPreprocess:
    """A fork's preprocess: the template's crop, then the same Python `if`."""

    def __call__(self, example, crop_height, crop_width, ignore_label, key):
        return _InvertIfBright()(ScaleAndCrop()(example, crop_height, crop_width, ignore_label, key), None)


class _BlankMaskTask(Segmentation):
    """A fork's task whose `decode_label` has a Python `if` on a tensor (every mask becomes 0)."""

    def decode_label(self, parsed, image_hw, index, filename):
        mask, checks = super().decode_label(parsed, image_hw, index, filename)
        if tf.reduce_max(mask) >= 0:
            mask = tf.zeros_like(mask)
        return mask, checks


def test_a_forks_augmentation_preprocess_and_task_are_still_converted_by_autograph(tiny_dataset):
    """The template's own map functions skip AutoGraph (data/input.py); a fork's are converted."""
    plain = _train_batches(tiny_dataset, [], count=2)
    augmented = _train_batches(tiny_dataset, [_InvertIfBright()], 2)
    preprocessed = _train_batches(tiny_dataset, [], 2, preprocess=_InvertingPreprocess())
    for (image, mask), *others in zip(plain, augmented, preprocessed):
        for image2, mask2 in others:
            np.testing.assert_array_equal(255 - image, image2)
            np.testing.assert_array_equal(mask, mask2)
    assert any(mask.any() for _, mask in plain)
    assert not any(mask.any() for _, mask in _train_batches(tiny_dataset, [], 2, task=_BlankMaskTask(4)))
    _, _, masks, _ = _collect(_val_fn(tiny_dataset, task=_BlankMaskTask(4)))  # The evaluation stream too.
    assert len(masks) == TINY_VAL and not masks.any()


def test_flips_move_the_mask_with_the_image_and_leave_a_class_label_alone():
    from data.augment import FlipLeftRight

    image = tf.constant(np.arange(2 * 3).reshape(2, 3, 1).repeat(3, -1).astype(np.uint8))
    mask = tf.constant(np.arange(6).reshape(2, 3).astype(np.uint8))
    out = FlipLeftRight(probability=1.0)({"image": image, "mask": mask, "label": tf.constant(7)}, tf.constant([1, 2]))
    np.testing.assert_array_equal(out["image"].numpy(), image.numpy()[:, ::-1])
    np.testing.assert_array_equal(out["mask"].numpy(), mask.numpy()[:, ::-1])
    assert int(out["label"]) == 7


def test_an_empty_shard_counts_nothing_and_an_empty_split_is_named(tiny_dataset, tmp_path):
    """DeepLab's converter writes 0-byte shards for small splits: they read as no records."""
    import shutil

    for path in sorted(tiny_dataset.glob("val-*.tfrecord")):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "val-99999-of-99999.tfrecord").write_bytes(b"")
    fn = data_input.make_input_fn(str(tmp_path / "val-*.tfrecord"), 3, TINY_SIZE, TINY_SIZE, SEGMENTATION)
    assert fn.num_examples == TINY_VAL
    assert sum(len(features["index"]) for features, _ in fn()) == TINY_VAL
    (tmp_path / "none-0.tfrecord").write_bytes(b"")
    with pytest.raises(DataError, match="no records in .*none-"):
        data_input.make_input_fn(str(tmp_path / "none-*.tfrecord"), 3, TINY_SIZE, TINY_SIZE, SEGMENTATION)


def test_the_stream_resumes_anywhere_reading_at_most_one_epoch():
    """Each epoch is its own seeded shuffle: the stream from position p equals the stream from 0
    with p elements dropped, and starting 10 epochs in reads no more than one epoch."""
    n = 12
    reads = tf.Variable(0, dtype=tf.int64)
    records = tf.data.Dataset.range(n).map(lambda i: (i, reads.assign_add(1)))

    def stream(start, count):
        dataset = data_input._epochs_from(records, n, tf.constant(start, tf.int64), seed=5, shuffle_buffer=64)
        return [(int(p), int(pair[0])) for p, pair in dataset.take(count)]

    whole = stream(0, 4 * n)
    assert [p for p, _ in whole] == list(range(4 * n))
    epochs = [sorted(i for _, i in whole[e * n : (e + 1) * n]) for e in range(4)]
    assert all(e == list(range(n)) for e in epochs)  # Every record once per epoch.
    orders = {tuple(i for _, i in whole[e * n : (e + 1) * n]) for e in range(4)}
    assert len(orders) == 4  # Each epoch its own order.
    for start in (1, n - 1, n, 2 * n + 5):
        assert stream(start, 4 * n - start) == whole[start:]
    reads.assign(0)
    assert stream(10 * n + 3, 1)[0][0] == 10 * n + 3
    assert int(reads.numpy()) <= n  # The epoch it starts in, no earlier one.


def test_an_index_too_large_for_any_split_is_one_line():
    from common.errors import DataError

    with pytest.raises(DataError, match=r"^subset: index 99999999999999999999 is too large"):
        data_input.parse_subset("3,99999999999999999999")


def _train_fn(root, **kwargs):
    from data.augment import FlipLeftRight

    return data_input.make_input_fn(
        str(root / "train-*.tfrecord"), 4, TINY_SIZE, TINY_SIZE, SEGMENTATION, training=True, seed=3,
        augmentations=[FlipLeftRight()], preprocess=ScaleAndCrop(min_scale_factor=0.5, max_scale_factor=2.0),
        **kwargs,
    )  # fmt: skip


def _stream_from(input_fn, step, count):
    """`count` training batches (indices, images, masks) from the one after `step`, as a resumed run reads them."""
    with tf.Graph().as_default():
        global_step = tf.compat.v1.train.create_global_step()  # The variable the stream reads.
        iterator = tf.compat.v1.data.make_initializable_iterator(input_fn())
        features, labels = iterator.get_next()
        with tf.compat.v1.Session() as session:
            session.run([global_step.assign(step), tf.compat.v1.tables_initializer()])  # A subset's table.
            session.run(iterator.initializer)
            return [session.run((features["index"], features["image"], labels)) for _ in range(count)]


def test_the_decoded_cache_keeps_the_stream_batch_for_batch_and_resumes_alike(tiny_dataset):
    """Each example decoded once and kept (the split has indexes and fits): the same batches as
    decoding at every epoch, across epochs (3 batches each), with a random scale and crop and
    an augmentation drawing at each position, and resumed inside an epoch (step 4: 4 records
    into the second) or at an epoch's start (step 3)."""
    cached, decoding = _train_fn(tiny_dataset), _train_fn(tiny_dataset, decoded_cache_mb=0)
    assert cached.cached and not decoding.cached
    for step in (0, 3, 4):
        a, b = _stream_from(cached, step, 8), _stream_from(decoding, step, 8)
        for batch_a, batch_b in zip(a, b):
            for x, y in zip(batch_a, batch_b):
                np.testing.assert_array_equal(x, y)
    whole = _stream_from(cached, 0, 12)
    np.testing.assert_array_equal(_stream_from(cached, 4, 1)[0][1], whole[4][1])  # The resume reads on from there.


def _counting_segmentation():
    """A Segmentation task whose label decodes (one a record decoded) are counted in `task.decodes`
    (its own method wrapped: a subclass would take the task's name in the results readers' registry)."""
    task = Segmentation(4)
    decode_label, task.decodes = task.decode_label, []

    def counting(parsed, image_hw, index, filename):
        mask, checks = decode_label(parsed, image_hw, index, filename)
        return mask, [*checks, tf.py_function(lambda: task.decodes.append(1) or 0, [], tf.int32)]

    task.decode_label = counting
    return task


@pytest.mark.parametrize("step, decodes", [(0, TINY_TRAIN), (4, 2 * TINY_TRAIN - 4)])
def test_the_decoded_cache_decodes_each_record_once(tiny_dataset, step, decodes):
    """Eight batches of 4 from 12 records: from step 0, each record decoded once; from step 4
    (4 records into the second epoch), the 8 left of that epoch, then the third fills the
    cache and the fourth decodes nothing. Without the cache, every position is decoded."""
    counted = {}
    for megabytes in (1024, 0):
        task = _counting_segmentation()
        fn = data_input.make_input_fn(
            str(tiny_dataset / "train-*.tfrecord"), 4, TINY_SIZE, TINY_SIZE, task, training=True, seed=3,
            decoded_cache_mb=megabytes,
        )  # fmt: skip
        _stream_from(fn, step, 8)
        counted[megabytes] = len(task.decodes)
    assert counted[1024] == decodes
    assert counted[0] >= 8 * 4  # At least every position read.


def test_the_decoded_cache_keeps_a_subsets_stream(tiny_dataset):
    subset = [0, 2, 3, 5, 7, 11]
    cached = _train_fn(tiny_dataset, subset=subset)
    decoding = _train_fn(tiny_dataset, subset=subset, decoded_cache_mb=0)
    assert cached.cached
    for batch_a, batch_b in zip(_stream_from(cached, 2, 4), _stream_from(decoding, 2, 4)):
        assert set(batch_a[0]) <= set(subset)
        for x, y in zip(batch_a, batch_b):
            np.testing.assert_array_equal(x, y)


def test_the_decoded_cache_is_used_only_when_the_split_is_known_to_fit(tiny_dataset, tmp_path):
    import shutil

    from data import records_index

    size = TINY_TRAIN * TINY_SIZE * TINY_SIZE * 4  # Bytes the decoded split takes (4 a pixel).
    assert _train_fn(tiny_dataset).cached
    assert not _train_fn(tiny_dataset, decoded_cache_mb=0).cached
    assert not _train_fn(tiny_dataset, lenient=True).cached  # Lenient mode counts what each epoch skips.
    indexes = [records_index.read(path) for path in data_input.list_files(str(tiny_dataset / "train-*.tfrecord"))]
    assert data_input._fits(indexes, size / 2**20, None)
    assert not data_input._fits(indexes, (size - 1) / 2**20, None)
    assert data_input._fits(indexes, (size / 2) / 2**20, np.arange(TINY_TRAIN // 2))  # A subset counts its own.
    # A shard without its index (DeepLab's own records): the sizes are unknown, so no cache.
    for path in tiny_dataset.glob("train-*"):
        shutil.copy2(path, tmp_path / path.name)  # Its times kept, so the copied indexes stay valid.
    assert _train_fn(tmp_path).cached
    next(iter(tmp_path.glob(f"*{records_index.SUFFIX}"))).unlink()
    assert not _train_fn(tmp_path).cached
