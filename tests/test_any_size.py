"""Images of any size: DeepLab-style scale/pad/crop training, evaluation at each image's own
size (every labelled pixel counted once, padding never, the same at every batch size), panels
and the per-example CSV at the image's size and file name, and the exported model agreeing
with the evaluation image by image."""

import csv
import io
import json

import gin
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from core import configurables, results
from data import input as data_input
from data import preprocess, synthetic, writer
from models.segmentation import Segmentation
from tests.conftest import tiny_gin_params

CROP = 24
SIZES = {
    "train": [(20, 31), (45, 26), (33, 33), (27, 40), (38, 22), (24, 24)],
    "val": [(19, 29), (41, 35), (30, 22), (25, 44), (36, 31), (22, 27), (40, 40)],
}


def _examples(split):
    for i, (height, width) in enumerate(SIZES[split]):
        image, mask = synthetic.make_example(7, split, i, height, width)
        mask = mask.copy()
        mask[:, -2:] = 255  # An ignored band, as VOC's object borders.
        if i % 2:  # Half JPEG, half PNG.
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format="JPEG", quality=90)
            yield {"image": buffer.getvalue(), "image_format": "jpeg", "filename": f"{split}_{i}.jpg", "mask": mask}
        else:
            yield {"image": image, "filename": f"{split}_{i}.png", "mask": mask}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("any_size")
    for split in SIZES:
        writer.write_shards(_examples(split), len(SIZES[split]), str(root / split), 2, progress=False)
    return root


def _params(root, **overrides):
    params = {
        "IMAGE_HEIGHT": CROP,
        "IMAGE_WIDTH": CROP,
        "SUMMARY_INDICES": [1, 3],
        "MIN_SCALE_FACTOR": 0.5,
        "MAX_SCALE_FACTOR": 1.5,
        "SCALE_FACTOR_STEP_SIZE": 0.25,
    }
    return tiny_gin_params(root, **{**params, **overrides})


def _run(root, function, **kwargs):
    gin.clear_config()
    try:
        configurables.parse_gin(["configs/synthetic.gin"], _params(root, **kwargs.pop("gin", {})))
        return function(**kwargs)
    finally:
        gin.clear_config()


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("run") / "model"
    _run(dataset, configurables.train_and_evaluate, model_dir=str(model_dir))
    return model_dir


# --- Training: DeepLab's preprocessing, stateless. -------------------------------------------


def _reference_resize_to_range(height, width, min_size, max_size, factor):
    """DeepLab's preprocess_utils.resize_to_range, in numpy."""
    new = np.array([height, width], np.float64)
    if min_size is not None:
        new = np.floor(np.array([height, width]) * (min_size / min(height, width)))
    if max_size is not None and new.max() > max_size:
        new = np.floor(np.array([height, width]) * (max_size / max(height, width)))
    new = new.astype(np.int64)
    if factor is not None:
        new += (factor - (new - 1) % factor) % factor
    return tuple(int(v) for v in new)


@pytest.mark.parametrize(
    "size,min_size,max_size,factor",
    [((375, 500), 513, 513, None), ((375, 500), 321, 513, 16), ((100, 37), None, 64, None), ((17, 900), 40, 300, 8)],
)
def test_resize_to_range_is_deeplabs(size, min_size, max_size, factor):
    got = preprocess.resize_to_range(tf.constant(size[0]), tf.constant(size[1]), min_size, max_size, factor)
    assert tuple(int(v) for v in got) == _reference_resize_to_range(*size, min_size, max_size, factor)


def _coordinates(height, width):
    """An image whose pixels say where they are, and a mask that is a function of them."""
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    image = np.stack([rows, cols, np.full_like(rows, 7)], -1).astype(np.uint8)
    return {"image": tf.constant(image), "mask": tf.constant(((rows + cols) % 5).astype(np.uint8))}


def test_crop_pads_with_the_mean_and_ignore_and_moves_mask_with_image():
    op = preprocess.ScaleAndCrop()
    offsets = set()
    for position in range(12):
        out = op(_coordinates(20, 30), 24, 24, 255, tf.constant([3, position], tf.int64))
        image, mask = out["image"].numpy(), out["mask"].numpy()
        assert image.shape == (24, 24, 3) and mask.shape == (24, 24)
        padded = image[..., 2] != 7
        # Padding only below the image (20 rows < 24): the pad pixel, and ignore in the mask.
        assert np.all(image[padded] == preprocess.PAD_PIXEL) and np.all(mask[padded] == 255)
        assert padded.sum() == 4 * 24
        inside = ~padded
        np.testing.assert_array_equal(mask[inside], (image[..., 0][inside].astype(int) + image[..., 1][inside]) % 5)
        offsets.add(int(image[0, 0, 1]))
    assert len(offsets) > 3  # The crop's column offset is drawn, not fixed.


def test_random_scale_and_crop_is_a_function_of_the_key_only():
    op = preprocess.ScaleAndCrop(min_scale_factor=0.5, max_scale_factor=2.0, scale_factor_step_size=0.25)
    example = _coordinates(33, 41)

    def draw(position):
        return op(example, 24, 24, 255, tf.constant([11, position], tf.int64))["mask"].numpy()

    np.testing.assert_array_equal(draw(5), draw(5))
    assert any(not np.array_equal(draw(5), draw(p)) for p in range(6, 10))


def test_same_size_images_pass_through_unchanged():
    example = _coordinates(24, 24)
    out = preprocess.ScaleAndCrop()(example, 24, 24, 255, tf.constant([1, 2], tf.int64))
    np.testing.assert_array_equal(out["image"].numpy(), example["image"].numpy())
    np.testing.assert_array_equal(out["mask"].numpy(), example["mask"].numpy())


def test_training_stream_of_variable_sizes_is_deterministic_and_resumes_exactly(dataset):
    task = Segmentation(4)
    op = preprocess.ScaleAndCrop(min_scale_factor=0.5, max_scale_factor=1.5, scale_factor_step_size=0.25)
    pattern = str(dataset / "train-*.tfrecord")

    def batches(start_step, count):
        graph = tf.Graph()
        with graph.as_default():
            step = tf.compat.v1.train.get_or_create_global_step()
            fn = data_input.make_input_fn(pattern, 2, CROP, CROP, task, training=True, seed=3, preprocess=op)
            iterator = tf.compat.v1.data.make_initializable_iterator(fn())
            element = iterator.get_next()
            with tf.compat.v1.Session() as session:
                session.run(step.assign(start_step))
                session.run(iterator.initializer)
                return [session.run(element) for _ in range(count)]

    whole = batches(0, 5)
    again = batches(0, 5)
    resumed = batches(2, 3)  # A run restored at step 2 reads what the whole run read at steps 2, 3, 4.
    for a, b in zip(whole, again):
        np.testing.assert_array_equal(a[0]["image"], b[0]["image"])
        np.testing.assert_array_equal(a[1], b[1])
    for a, b in zip(whole[2:], resumed):
        np.testing.assert_array_equal(a[0]["image"], b[0]["image"])
        np.testing.assert_array_equal(a[1], b[1])
    assert whole[0][0]["image"].shape == (2, CROP, CROP, 3)
    assert any(np.any(labels == 255) for _, labels in whole)  # Some padding reached the crops.


# --- Evaluation at each image's own size. -------------------------------------------------


def _labelled_pixels(split):
    counts = np.zeros(4, np.int64)
    for example in _examples(split):
        mask = example["mask"]
        counts += np.bincount(mask[mask != 255].ravel(), minlength=4)
    return counts


def _evaluate(dataset, model_dir, batch_size, eval_name):
    record = _run(
        dataset,
        configurables.evaluate,
        model_dir=str(model_dir),
        eval_name=eval_name,
        gin={"EVAL_BATCH_SIZE": batch_size},
    )[-1]
    return record


@pytest.mark.slow
def test_evaluation_counts_every_labelled_pixel_at_its_size_whatever_the_batch(dataset, trained):
    one = _evaluate(dataset, trained, 1, "b1")
    seven = _evaluate(dataset, trained, 7, "b7")
    confusion = np.array(one["confusion_matrix"], np.int64)
    np.testing.assert_array_equal(confusion.sum(axis=1), _labelled_pixels("val"))
    np.testing.assert_array_equal(confusion, np.array(seven["confusion_matrix"], np.int64))
    assert one["metrics"]["mean_iou"] == seven["metrics"]["mean_iou"]

    # The per-example CSV names each example by file as well as index.
    with open(results.latest_per_example(str(trained / "eval_b7"))) as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    assert {row["index"]: row["filename"] for row in rows} == {
        str(i): f"val_{i}.{'jpg' if i % 2 else 'png'}" for i in range(len(SIZES["val"]))
    }

    # Panels at each image's own size (4 tiles side by side), padding cropped; file names beside.
    from tensorboard.backend.event_processing import event_file_loader

    shapes, texts = {}, {}
    for path in sorted((trained / "eval_b7").glob("events.out.tfevents.*")):
        for event in event_file_loader.LegacyEventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.tag.startswith("images/index_"):
                    shapes[value.tag] = (value.image.height, value.image.width)
                if value.tag.startswith("files/index_"):
                    texts[value.tag] = tf.make_ndarray(value.tensor).item().decode()
    for index in (1, 3):
        height, width = SIZES["val"][index]
        assert shapes[f"images/index_{index:05d}/0"] == (height, 4 * width)
        assert texts[f"files/index_{index:05d}/0"] == f"index {index}: val_{index}.jpg"


@pytest.mark.slow
def test_exported_model_image_by_image_agrees_with_the_evaluation(dataset, trained, tmp_path):
    from data import schema
    from tools import export

    gin.clear_config()
    try:
        configurables.parse_gin(["configs/synthetic.gin"], _params(dataset))
        path = export.export(str(trained), str(tmp_path / "export"))
    finally:
        gin.clear_config()
    serving = tf.saved_model.load(path).signatures["serving_default"]
    confusion = np.zeros((4, 4), np.int64)
    for example in _examples("val"):
        image = example["image"]
        pixels = schema.decode_image(image).numpy() if isinstance(image, bytes) else image
        classes = serving(image=tf.constant(pixels[None]))["classes"].numpy()[0]
        assert classes.shape == example["mask"].shape
        valid = example["mask"] != 255
        np.add.at(confusion, (example["mask"][valid].astype(int), classes[valid]), 1)
    record = _evaluate(dataset, trained, 3, "b3")
    np.testing.assert_array_equal(confusion, np.array(record["confusion_matrix"], np.int64))
    with open(trained / "eval_b3" / results.RESULTS_FILE) as f:
        assert json.loads(f.readlines()[-1])["confusion_matrix"] == confusion.tolist()


# --- Multi-scale and mirrored evaluation. ---------------------------------------------------


class _PositionNet:
    """A net with one weight whose logits depend on the pixel and on its column, so a
    mirrored view only agrees once mirrored back; `input_multiple` makes it pad."""

    input_multiple = 4

    def __call__(self, images, num_outputs, training=False, seed=0):
        weight = tf.compat.v1.get_variable("w", [3, num_outputs], initializer=tf.constant_initializer(0.7))
        columns = tf.cast(tf.range(tf.shape(images)[2]), tf.float32)[None, None, :, None]
        return tf.einsum("bhwc,ck->bhwk", images, weight) + 0.05 * columns * tf.range(num_outputs, dtype=tf.float32)


def _reference_views(image, scales, flip, num_classes):
    """DeepLab's multi-scale inference in numpy around TensorFlow's resize: the mean softmax."""
    height, width = image.shape[1:3]
    weight = np.full([3, num_classes], 0.7, np.float32)

    def net(x):  # x [1, h, w, 3]; the net at its padded size, cropped back (padding is to the right).
        columns = np.arange(x.shape[2], dtype=np.float32)[None, None, :, None]
        return np.einsum("bhwc,ck->bhwk", x, weight) + 0.05 * columns * np.arange(num_classes, dtype=np.float32)

    total = 0
    for scale in scales:
        size = [max(1, int(round(height * scale))), max(1, int(round(width * scale)))]
        scaled = tf.compat.v1.image.resize_bilinear(image, size, align_corners=True).numpy()
        for mirrored in [False, True] if flip else [False]:
            view = scaled[:, :, ::-1] if mirrored else scaled
            logits = net(view)
            logits = logits[:, :, ::-1] if mirrored else logits
            logits = tf.compat.v1.image.resize_bilinear(logits, [height, width], align_corners=True).numpy()
            total = total + tf.nn.softmax(logits).numpy()
    return total / (len(scales) * (2 if flip else 1))


@pytest.mark.parametrize("scales,flip", [([1.0], True), ([0.5, 1.0, 1.5], False), ([0.75, 1.25], True)])
def test_multi_view_averages_the_probabilities_of_every_scale_and_mirror(scales, flip):
    from models import inference

    image = np.random.RandomState(0).uniform(-1, 1, [1, 13, 18, 3]).astype(np.float32)
    graph = tf.Graph()
    with graph.as_default():
        logits = inference.multi_view(_PositionNet(), Segmentation(3), tf.constant(image), 0, scales, flip)
        assert len(tf.compat.v1.global_variables()) == 1  # Every view shares the one weight.
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            probabilities = session.run(tf.nn.softmax(logits))
    np.testing.assert_allclose(probabilities, _reference_views(image, scales, flip, 3), atol=1e-5)


@pytest.mark.parametrize("scales,flip", [([1.0], False), ([0.75, 1.0], True)])
def test_a_val_split_of_one_size_off_the_networks_multiple_keeps_its_size_for_the_panels(scales, flip):
    """Every val image 13x18 (no `size` feature: one size, no padding), a U-Net of multiple 4:
    padded to 16x20 and cropped back, the predictions keep 13x18 statically, which the panels'
    store needs (it raised "classes needs a static shape" at the first evaluation)."""
    from models import build_model_fn
    from models.unet import UNet

    images = np.random.RandomState(0).randint(0, 256, [2, 13, 18, 3]).astype(np.uint8)
    graph = tf.Graph()
    with graph.as_default():
        # As a dataset gives them: the batch's size unknown, the image's known.
        features = {"image": tf.compat.v1.placeholder_with_default(images, [None, 13, 18, 3]),
                    "index": tf.compat.v1.placeholder_with_default([0, 1], [None])}  # fmt: skip
        labels = tf.compat.v1.placeholder_with_default(np.zeros([2, 13, 18], np.int32), [None, 13, 18])
        model_fn = build_model_fn(UNet(4, 2), Segmentation(3), summary_indices=[1], eval_scales=scales,
                                  add_flipped_images=flip)  # fmt: skip
        spec = model_fn(features, labels, tf.estimator.ModeKeys.EVAL, None, tf.estimator.RunConfig(tf_random_seed=0))
        assert spec.predictions["classes"].shape.as_list() == [None, 13, 18]
        assert spec.predictions["probabilities"].shape.as_list() == [None, 13, 18, 3]
        assert "images/index_00001" in spec.eval_metric_ops  # The panel of val example 1.


@pytest.mark.slow
def test_evaluate_with_scales_and_flips_writes_its_own_eval_directory(dataset, trained):
    record = _run(
        dataset, configurables.evaluate, model_dir=str(trained), eval_scales=[0.5, 1.0], add_flipped_images=True
    )[-1]
    assert (trained / "eval_scales_0.5_1_flipped" / results.RESULTS_FILE).exists()
    np.testing.assert_array_equal(np.array(record["confusion_matrix"]).sum(axis=1), _labelled_pixels("val"))


@pytest.mark.slow
def test_evaluation_resize_compares_labels_at_the_original_size(dataset, trained):
    """Images resized into (None, 20) for the network; labels and panels at their own size."""
    record = _run(
        dataset,
        configurables.evaluate,
        model_dir=str(trained),
        eval_name="resized",
        gin={"EVAL_RESIZE": (None, 20), "SUMMARY_INDICES": [3]},
    )[-1]
    np.testing.assert_array_equal(np.array(record["confusion_matrix"]).sum(axis=1), _labelled_pixels("val"))
    assert preprocess.resized_size(*SIZES["val"][3], None, 20) == (11, 20)
    from tensorboard.backend.event_processing import event_file_loader

    shapes = {}
    for path in sorted((trained / "eval_resized").glob("events.out.tfevents.*")):
        for event in event_file_loader.LegacyEventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.tag.startswith("images/"):
                    shapes[value.tag] = (value.image.height, value.image.width)
    height, width = SIZES["val"][3]
    assert shapes == {"images/index_00003/0": (height, 4 * width)}
