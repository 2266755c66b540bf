"""tools/export.py and tools/predict.py end to end: the serving signature, an exact
round trip against `Estimator.predict`, saved_model_cli, the PNGs predict writes, and
one-line errors for a missing checkpoint, and images of sizes never seen in training."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tests.conftest import TINY_SIZE, TINY_VAL, tiny_gin_params
from tests.helpers import run_script

GIN_FILE = "configs/synthetic.gin"
NUM_CLASSES = 4  # configs/synthetic.gin
CLASS_NAMES = ["background", "circle", "square", "triangle"]


def _gin_args(dataset):
    return [f"--gin_file={GIN_FILE}"] + [f"--gin_param={param}" for param in tiny_gin_params(dataset)]


def _val_images(count):
    """The first `count` val images of `tiny_dataset`, uint8 [count, H, W, 3]."""
    from data import synthetic

    return np.stack([synthetic.make_example(1, "val", i, TINY_SIZE, TINY_SIZE)[0] for i in range(count)])


@pytest.fixture(scope="module")
def exported(tiny_dataset, tmp_path_factory):
    """Trains the tiny model once and exports it: `(model_dir, saved_model_dir, export result)`."""
    root = tmp_path_factory.mktemp("export")
    model_dir = root / "model"
    run_script("train.py", *_gin_args(tiny_dataset), f"--model_dir={model_dir}")
    result = run_script(  # A fresh interpreter: the test below reads all it prints.
        "tools/export.py", *_gin_args(tiny_dataset), f"--model_dir={model_dir}", f"--export_dir={root}/e", fresh=True
    )
    return model_dir, result.stdout.strip(), result


@pytest.fixture(scope="module")
def serving(exported):
    """The loaded SavedModel's `serving_default` function."""
    loaded = tf.saved_model.load(exported[1])
    # Yield, not return: the fixture's frame keeps `loaded` (and its variables) alive.
    yield loaded.signatures["serving_default"]


@pytest.mark.slow
def test_export_writes_a_savedmodel_with_the_documented_signature(exported, serving):
    model_dir, saved_model, result = exported
    # stdout is exactly the SavedModel's path: scripts can capture it.
    assert os.path.dirname(saved_model) == str(model_dir.parent / "e")
    assert os.path.exists(os.path.join(saved_model, "saved_model.pb"))
    assert "deprecat" not in (result.stdout + result.stderr).lower()
    assert result.stderr.startswith("devices: ") and "; precision float32" in result.stderr  # Not on stdout.

    inputs = serving.structured_input_signature[1]
    assert set(inputs) == {"image"}
    assert inputs["image"].dtype == tf.uint8
    assert inputs["image"].shape.as_list() == [None, None, None, 3]  # Any size.
    outputs = serving.structured_outputs
    assert set(outputs) == {"classes", "probabilities"}
    assert outputs["classes"].dtype == tf.int32
    assert outputs["classes"].shape.as_list() == [None, None, None]
    assert outputs["probabilities"].dtype == tf.float32
    assert outputs["probabilities"].shape.as_list() == [None, None, None, NUM_CLASSES]

    values = serving(image=tf.constant(_val_images(2)))
    np.testing.assert_allclose(values["probabilities"].numpy().sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(values["classes"].numpy(), values["probabilities"].numpy().argmax(-1))


@pytest.mark.slow
def test_savedmodel_classes_equal_estimator_predict_from_the_same_checkpoint(exported, serving, tiny_dataset):
    import gin

    from core import configurables

    model_dir, _, _ = exported
    gin.clear_config()
    try:
        configurables.parse_gin([GIN_FILE], tiny_gin_params(tiny_dataset))
        model_fn = configurables.build_model_fn()
        input_fn = configurables.make_input_fn(configurables.macro("VAL_FILES"), 3)
    finally:
        gin.clear_config()
    images = np.concatenate([features["image"].numpy() for features, _ in input_fn()])
    assert images.shape == (TINY_VAL, TINY_SIZE, TINY_SIZE, 3)

    estimator = tf.estimator.Estimator(model_fn, model_dir=str(model_dir))
    predictions = list(
        estimator.predict(
            lambda: input_fn().map(lambda features, labels: features),  # PREDICT gets no labels.
            checkpoint_path=tf.train.latest_checkpoint(str(model_dir)),
        )
    )
    assert [p["index"] for p in predictions] == list(range(TINY_VAL))
    expected = np.stack([p["classes"] for p in predictions])

    served = serving(image=tf.constant(images))["classes"].numpy()
    np.testing.assert_array_equal(served, expected)


@pytest.mark.slow
def test_saved_model_cli_runs_the_signature(exported, tmp_path):
    # TF 2.15's saved_model_cli reads --input_exprs with ast.literal_eval, so
    # `image=np.zeros(...)` is refused ("not a valid python literal"); feed a .npy file.
    zeros = tmp_path / "zeros.npy"
    np.save(zeros, np.zeros((1, TINY_SIZE, TINY_SIZE, 3), np.uint8))
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    result = subprocess.run(
        [cli, "run", "--dir", exported[1], "--tag_set", "serve", "--signature_def", "serving_default"]
        + ["--inputs", f"image={zeros}"],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert result.returncode == 0, result.stderr
    assert "Result for output key classes" in result.stdout
    assert "Result for output key probabilities" in result.stdout


@pytest.mark.slow
def test_predict_writes_mask_overlay_and_exact_classes(exported, serving, tmp_path):
    from tools.predict import colour_map

    images = _val_images(2)
    paths = []
    for i, image in enumerate(images):
        paths.append(str(tmp_path / f"val_{i}.png"))
        Image.fromarray(image).save(paths[-1])
    output_dir = tmp_path / "out"
    result = run_script(  # A fresh interpreter: no deprecation warning while TensorFlow loads either.
        "tools/predict.py",
        f"--saved_model={exported[1]}",
        f"--output_dir={output_dir}",
        f"--class_names={','.join(CLASS_NAMES)}",
        *paths,
        fresh=True,
    )
    assert len(result.stdout.strip().splitlines()) == 2
    assert "deprecat" not in (result.stdout + result.stderr).lower()
    expected = serving(image=tf.constant(images))["classes"].numpy()
    palette = colour_map(256)
    for i, image in enumerate(images):
        with Image.open(output_dir / f"val_{i}_classes.png") as png:
            assert png.mode == "L"
            classes = np.asarray(png)
        np.testing.assert_array_equal(classes, expected[i])
        with Image.open(output_dir / f"val_{i}_mask.png") as png:
            mask = np.asarray(png.convert("RGB"))
        np.testing.assert_array_equal(mask, palette[expected[i]])
        with Image.open(output_dir / f"val_{i}_overlay.png") as png:
            blended = np.asarray(png.convert("RGB")).astype(int)
        assert np.abs(blended - (image.astype(int) + mask.astype(int)) / 2).max() <= 0.5
    assert sorted(os.listdir(output_dir)) == sorted(
        f"val_{i}_{kind}.png" for i in range(2) for kind in ("classes", "mask", "overlay")
    )


@pytest.mark.slow
def test_predict_writes_each_mask_at_its_images_size_never_seen_in_training(exported, serving, tmp_path):
    """A 37x53 JPEG and a 70x41 PNG (training saw 32x32 crops): masks of their own sizes,
    equal to the SavedModel run on the pixels training decodes, and not constant."""
    from data import images, synthetic

    inputs = tmp_path / "in"
    inputs.mkdir()
    for name, (height, width) in {"odd.jpg": (37, 53), "tall.png": (70, 41)}.items():
        image = synthetic.make_example(3, "val", len(name), height, width)[0]
        Image.fromarray(image).save(inputs / name, quality=90)
    from tools.predict import predict

    output_dir = tmp_path / "out"
    predict(exported[1], sorted(map(str, inputs.iterdir())), str(output_dir))  # In-process: the CLI is tested above.
    for name, (height, width) in {"odd.jpg": (37, 53), "tall.png": (70, 41)}.items():
        classes = np.asarray(Image.open(output_dir / f"{os.path.splitext(name)[0]}_classes.png"))
        assert classes.shape == (height, width)
        pixels = images.read_image_file(str(inputs / name))
        direct = serving(image=tf.constant(pixels[None]))["classes"].numpy()[0]
        np.testing.assert_array_equal(classes, direct)
        assert len(np.unique(classes)) > 1


@pytest.mark.parametrize("with_checkpoint_flag", [False, True])
def test_export_without_a_checkpoint_fails_in_one_line(tmp_path, with_checkpoint_flag):
    model_dir = tmp_path / "untrained"
    model_dir.mkdir()
    missing = model_dir / "model.ckpt-7"
    args = [f"--gin_file={GIN_FILE}", f"--model_dir={model_dir}", f"--export_dir={tmp_path / 'e'}"]
    if with_checkpoint_flag:
        args.append(f"--checkpoint={missing}")
    result = run_script("tools/export.py", *args, check=False, fresh=True)  # All it prints, from its start on.
    assert result.returncode == 1 and result.stdout == ""  # stdout is the path, and there is none.
    # stderr: the devices line every entry point prints (here off stdout), then the one-line error.
    devices, message = result.stderr.strip().splitlines()
    assert devices.startswith("devices: ") and "; precision float32" in devices, devices
    assert str(missing if with_checkpoint_flag else model_dir) in message
    assert not (tmp_path / "e").exists()


def test_predict_decodes_a_jpeg_to_the_same_pixels_as_training(tmp_path):
    """One decoder everywhere: PIL's JPEG decoder differs from TensorFlow's on most pixels."""
    from PIL import Image

    from data import schema, synthetic, writer
    from data.input import make_input_fn
    from models.segmentation import Segmentation
    from tools.predict import load_image

    image, mask = synthetic.make_example(5, "val", 0, TINY_SIZE, TINY_SIZE)
    path = tmp_path / "photo.jpg"
    Image.fromarray(image).save(path, quality=85)
    jpeg = path.read_bytes()
    writer.write_shards(
        [{"image": jpeg, "image_format": "jpeg", "filename": "photo.jpg", "mask": mask}],
        1,
        str(tmp_path / "v"),
        1,
        progress=False,
    )
    input_fn = make_input_fn(str(tmp_path / "v-*.tfrecord"), 1, TINY_SIZE, TINY_SIZE, Segmentation(4))
    ((features, _),) = list(input_fn())
    pipeline = features["image"].numpy()[0]
    np.testing.assert_array_equal(load_image(str(path)), pipeline)
    np.testing.assert_array_equal(schema.decode_image(jpeg).numpy(), pipeline)
    with Image.open(path) as decoded:
        assert not np.array_equal(np.asarray(decoded.convert("RGB")), pipeline)  # PIL would not do.
