"""The synthetic datasets of the three tasks: determinism, labels checked independently,
segmentation unchanged, TFRecord round trip through the schema keys, and --for_config."""

import hashlib
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from common.constants import IGNORE_LABEL
from data import records_index, schema, synthetic
from tests.conftest import REPO_ROOT

SIZE = 32
COUNTS = {"num_train": 5, "num_val": 3, "num_shards": 2}


def _records(pattern):
    return [record.numpy() for record in tf.data.TFRecordDataset(sorted(tf.io.gfile.glob(pattern)))]


def _write(tmp_path, task, name="out"):
    synthetic.write_dataset(str(tmp_path / name), height=SIZE, width=SIZE, task=task, **COUNTS)
    return tmp_path / name


@pytest.mark.parametrize("task", synthetic.TASKS)
def test_two_runs_write_the_same_bytes(tmp_path, task):
    first, second = _write(tmp_path, task, "a"), _write(tmp_path, task, "b")
    names = sorted(os.listdir(first))
    assert names == sorted(os.listdir(second))
    assert len([name for name in names if name.endswith(".tfrecord")]) == 4
    for name in names:
        if records_index.is_index(name):  # Records each shard's modification time: the rest must match.
            a, b = (json.loads((run / name).read_text()) for run in (first, second))
            assert (a["count"], a["examples"]) == (b["count"], b["examples"]), name
        else:
            assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_tasks_draw_different_images():
    images = [synthetic.render(task, 0, "train", 3, SIZE, SIZE)[0] for task in synthetic.TASKS]
    assert not np.array_equal(images[0], images[1])
    assert not np.array_equal(images[0], images[2])
    assert not np.array_equal(images[1], images[2])


def test_an_example_depends_on_seed_split_and_index_only():
    image, label = synthetic.make_classification_example(4, "val", 9, SIZE, SIZE)
    again, label_again = synthetic.make_classification_example(4, "val", 9, SIZE, SIZE)
    np.testing.assert_array_equal(image, again)
    assert label == label_again
    for other in ((5, "val", 9), (4, "train", 9), (4, "val", 10)):
        assert not np.array_equal(image, synthetic.make_classification_example(*other, SIZE, SIZE)[0])


def test_segmentation_examples_are_those_of_the_original_generator():
    """A digest of examples made by `make_example` before the other tasks existed: the
    segmentation stream (and so datasets/synthetic) must not change."""
    digest = hashlib.sha256()
    for seed, split, index, height, width in (
        (0, "train", 0, 64, 64),
        (0, "val", 17, 64, 64),
        (1, "val", 3, 32, 32),
        (3, "train", 5, 24, 40),
    ):
        image, mask = synthetic.make_example(seed, split, index, height, width)
        assert image.dtype == mask.dtype == np.uint8
        digest.update(image.tobytes())
        digest.update(mask.tobytes())
    assert digest.hexdigest() == "dc60a4f590e642fc07743ccc1142f5d46ab3f382e40cf6714012b1b53c65d8ab"


def test_segmentation_records_are_the_unchanged_generator_output(tmp_path):
    root = _write(tmp_path, "segmentation")
    assert json.loads((root / "dataset.json").read_text())["class_names"] == list(synthetic.CLASS_NAMES)
    for split, count in (("train", COUNTS["num_train"]), ("val", COUNTS["num_val"])):
        records = _records(str(root / f"{split}-*.tfrecord"))
        assert len(records) == count
        for index, record in enumerate(records):
            image, mask = synthetic.make_example(0, split, index, SIZE, SIZE)
            expected = schema.make_example(image, f"{split}_{index:06d}.png", mask=mask).SerializeToString()
            assert record == expected
            decoded = schema.parse_and_decode(tf.constant(record))
            np.testing.assert_array_equal(decoded["image"].numpy(), image)
            np.testing.assert_array_equal(decoded["mask"].numpy(), mask)


def _geometry(shape, height, width):
    """Where a `synthetic.Shape` lies, from its parameters, written apart from the generator's code."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    dy, dx = y - shape.cy, x - shape.cx
    if shape.kind == 1:
        return np.hypot(dy, dx) <= shape.radius
    if shape.kind == 2:
        c, s = np.cos(shape.angle), np.sin(shape.angle)
        return np.maximum(np.abs(c * dx + s * dy), np.abs(c * dy - s * dx)) <= 0.85 * shape.radius
    # Triangle: edges 0.7 r from the centre with normals at angle + 2 pi k / 3, so the
    # vertices sit 1.4 r away, opposite each normal; inside = same side of all three edges.
    normals = shape.angle + 2 * np.pi * np.arange(3) / 3
    vy, vx = -1.4 * shape.radius * np.sin(normals), -1.4 * shape.radius * np.cos(normals)
    sides = [(vx[(k + 1) % 3] - vx[k]) * (dy - vy[k]) - (vy[(k + 1) % 3] - vy[k]) * (dx - vx[k]) for k in range(3)]
    return np.all(np.array(sides) >= 0, axis=0) | np.all(np.array(sides) <= 0, axis=0)


def _paint_order(drawn, height, width):
    """The kind on top at each pixel, from the shapes' geometry."""
    shapes = np.zeros((height, width), np.uint8)
    for shape in drawn:
        shapes[_geometry(shape, height, width)] = shape.kind
    return shapes


def test_segmentation_mask_is_the_shapes_with_an_ignore_band():
    for index in range(6):
        image, shapes, drawn = synthetic.render("segmentation", 2, "train", index, SIZE, SIZE)
        seg_image, mask = synthetic.make_example(2, "train", index, SIZE, SIZE)
        np.testing.assert_array_equal(seg_image, image)
        kept = mask != IGNORE_LABEL
        np.testing.assert_array_equal(mask[kept], shapes[kept])
        assert 1 <= len(drawn) <= 4
        assert np.sum(_paint_order(drawn, SIZE, SIZE) != shapes) <= 3  # Float rounding on a boundary pixel or two.
        # The band is exactly the pixels with a differently labelled 4-neighbour.
        padded = np.pad(shapes, 1, mode="edge")
        neighbours = [
            padded[1 + dy : 1 + dy + SIZE, 1 + dx : 1 + dx + SIZE] for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1))
        ]
        np.testing.assert_array_equal(~kept, np.any([n != shapes for n in neighbours], axis=0))


def test_classification_label_is_the_one_shape_drawn():
    labels = []
    for index in range(30):
        image, label = synthetic.make_classification_example(0, "train", index, SIZE, SIZE)
        rendered, shapes, drawn = synthetic.render("classification", 0, "train", index, SIZE, SIZE)
        np.testing.assert_array_equal(image, rendered)
        assert isinstance(label, int) and 0 <= label < len(synthetic.SHAPE_NAMES)
        # One shape, of the label's kind, wholly inside the image (its outline shows).
        assert [shape.kind for shape in drawn] == [label + 1]
        assert set(np.unique(shapes).tolist()) == {0, label + 1}
        assert np.sum(_geometry(drawn[0], SIZE, SIZE) != (shapes > 0)) <= 3
        assert not (shapes[0].any() or shapes[-1].any() or shapes[:, 0].any() or shapes[:, -1].any())
        # Its pixels stand out from the background: the image shows the mask.
        inside, outside = image[shapes > 0].mean(axis=0), image[shapes == 0].mean(axis=0)
        assert np.abs(inside - outside).sum() > 30
        labels.append(label)
    assert sorted(set(labels)) == [0, 1, 2]


def _kind_from_mask(shapes):
    """A shape's kind from its mask alone: its area over its squared reach from the centroid
    (rotation-free: circle pi, square 2, triangle 1.3)."""
    ys, xs = np.nonzero(shapes)
    reach = np.hypot(ys - ys.mean(), xs - xs.mean()).max() + 0.5
    compactness = len(ys) / reach**2
    return 1 if compactness > 2.55 else 2 if compactness > 1.65 else 3


def test_classification_label_matches_the_shape_geometry():
    agree = [
        _kind_from_mask(synthetic.render("classification", 1, "val", i, 64, 64)[1])
        == synthetic.make_classification_example(1, "val", i, 64, 64)[1] + 1
        for i in range(60)
    ]
    assert np.mean(agree) >= 0.95, agree


def test_regression_target_is_the_covered_fraction():
    targets = []
    for index in range(20):
        image, target = synthetic.make_regression_example(0, "val", index, SIZE, SIZE)
        rendered, shapes, drawn = synthetic.render("regression", 0, "val", index, SIZE, SIZE)
        np.testing.assert_array_equal(image, rendered)
        assert target[0] == np.float32(np.mean(shapes > 0))  # The shapes before the ignore band...
        assert target.dtype == np.float32 and target.shape == (1,)
        assert 1 <= len(drawn) <= 4
        # ...and, recomputed from the shapes' parameters, not from the generator's mask.
        covered = np.any([_geometry(shape, SIZE, SIZE) for shape in drawn], axis=0)
        assert abs(target[0] * SIZE**2 - covered.sum()) <= 3  # Float rounding on a boundary pixel or two.
        assert 0 < target[0] <= 1
        targets.append(float(target[0]))
    assert len(set(targets)) > 10


def test_regression_target_counts_the_ignore_band_as_covered():
    """The target comes from the shapes before the band: more than the mask's kept shape pixels."""
    for index in range(10):
        _, target = synthetic.make_regression_example(0, "val", index, SIZE, SIZE)
        _, shapes, _ = synthetic.render("regression", 0, "val", index, SIZE, SIZE)
        padded = np.pad(shapes > 0, 1)
        eroded = (shapes > 0) & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
        assert target[0] > eroded.mean()


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_round_trip_through_tfrecords_with_the_schema_keys(tmp_path, task):
    root = _write(tmp_path, task)
    summary = json.loads((root / "dataset.json").read_text())
    assert summary["task"] == task and (summary["height"], summary["width"]) == (SIZE, SIZE)
    assert summary["num_train"] == COUNTS["num_train"] and summary["num_val"] == COUNTS["num_val"]
    if task == "classification":
        assert summary["class_names"] == ["circle", "square", "triangle"]
        spec = {schema.CLASS_LABEL: tf.io.FixedLenFeature((), tf.int64)}
    else:
        assert summary["target_names"] == ["coverage"]
        spec = {schema.REGRESSION_TARGET: tf.io.FixedLenFeature((1,), tf.float32)}
    spec[schema.IMAGE_ENCODED] = tf.io.FixedLenFeature((), tf.string)
    spec[schema.IMAGE_FILENAME] = tf.io.FixedLenFeature((), tf.string)
    for split in ("train", "val"):
        for index, record in enumerate(_records(str(root / f"{split}-*.tfrecord"))):
            keys = set(tf.train.Example.FromString(record).features.feature)
            assert schema.MASK_ENCODED not in keys
            assert (schema.CLASS_LABEL in keys) == (task == "classification")
            assert (schema.REGRESSION_TARGET in keys) == (task == "regression")
            parsed = tf.io.parse_single_example(record, spec)
            image = tf.io.decode_png(parsed[schema.IMAGE_ENCODED], channels=3).numpy()
            assert parsed[schema.IMAGE_FILENAME].numpy().decode() == f"{split}_{index:06d}.png"
            if task == "classification":
                expected_image, label = synthetic.make_classification_example(0, split, index, SIZE, SIZE)
                assert parsed[schema.CLASS_LABEL].numpy() == label
            else:
                expected_image, target = synthetic.make_regression_example(0, split, index, SIZE, SIZE)
                np.testing.assert_array_equal(parsed[schema.REGRESSION_TARGET].numpy(), target)
            np.testing.assert_array_equal(image, expected_image)


def test_write_shards_summarises_each_label_kind(tmp_path):
    from data import writer

    image = np.zeros((4, 4, 3), np.uint8)
    mask = np.array([[0, 1, 1, 255]] * 4, np.uint8)
    stats = writer.write_shards(
        [{"image": image, "filename": f"{i}.png", "mask": mask} for i in range(3)], 3, str(tmp_path / "s"), 2, False
    )
    assert stats["num_examples"] == 3 and len(stats["paths"]) == 2
    assert stats["pixel_counts"][[0, 1, 255]].tolist() == [12, 24, 12] and stats["pixel_counts"].sum() == 48
    assert set(stats) == {"paths", "num_examples", "sizes", "pixel_counts"}
    assert stats["sizes"] == [(4, 4)] * 3  # Each example's (height, width), in order.

    labels = [2, 0, 2, 2]
    stats = writer.write_shards(
        ({"image": image, "filename": f"{i}.png", "class_label": label} for i, label in enumerate(labels)),
        4,
        str(tmp_path / "c"),
        1,
        False,
    )
    assert stats["label_counts"].tolist() == [1, 0, 3] and "pixel_counts" not in stats
    assert "2" in writer.format_label_counts(stats["label_counts"], ["a", "b", "c"]).splitlines()[3]

    targets = [[0.5, 1.0], [0.1, 3.0], [0.3, 2.0]]
    stats = writer.write_shards(
        [{"image": image, "filename": f"{i}.png", "target": t} for i, t in enumerate(targets)],
        3,
        str(tmp_path / "r"),
        3,
        False,
    )
    np.testing.assert_allclose(stats["target_summary"]["min"], [0.1, 1.0], rtol=1e-6)
    np.testing.assert_allclose(stats["target_summary"]["mean"], [0.3, 2.0], rtol=1e-6)
    np.testing.assert_allclose(stats["target_summary"]["max"], [0.5, 3.0], rtol=1e-6)
    assert "coverage" in writer.format_target_summary(stats["target_summary"], ["coverage"])
    records = _records(str(tmp_path / "r-*.tfrecord"))
    values = [
        tf.train.Example.FromString(r).features.feature[schema.REGRESSION_TARGET].float_list.value for r in records
    ]
    np.testing.assert_allclose(values, targets, rtol=1e-6)


def test_write_shards_refuses_mixed_or_missing_labels_and_wrong_counts(tmp_path):
    from data import writer

    image = np.zeros((4, 4, 3), np.uint8)

    def write(examples, count=None):
        count = len(examples) if count is None else count
        return writer.write_shards(examples, count, str(tmp_path / "x"), 1, progress=False)

    with pytest.raises(ValueError, match="1.png: has a target but the examples before it have a class_label"):
        write(
            [
                {"image": image, "filename": "0.png", "class_label": 1},
                {"image": image, "filename": "1.png", "target": [1.0]},
            ]
        )
    with pytest.raises(ValueError, match="1.png: target has 2 value"):
        write(
            [
                {"image": image, "filename": "0.png", "target": [1.0]},
                {"image": image, "filename": "1.png", "target": [1, 2]},
            ]
        )
    with pytest.raises(ValueError, match="0.png: an example needs exactly one"):
        write([{"image": image, "filename": "0.png"}])
    with pytest.raises(ValueError, match="must be a dict"):
        write([(image, np.zeros((4, 4), np.uint8), "0.png")])  # The old tuple form.
    with pytest.raises(ValueError, match="expected 3 examples, got 2"):
        write([{"image": image, "filename": f"{i}.png", "class_label": 0} for i in range(2)], 3)
    with pytest.raises(ValueError, match="expected 1 examples, got more"):
        write([{"image": image, "filename": f"{i}.png", "class_label": 0} for i in range(2)], 1)


# --for_config


def _repo(tmp_path):
    """A stand-in repository root: configs/base.gin as the real one's shape, and a datasets/ folder."""
    (tmp_path / "configs").mkdir(parents=True)
    (tmp_path / "configs" / "base.gin").write_text(
        "TRAIN_FILES = %gin.REQUIRED\n"
        "IMAGE_HEIGHT = %gin.REQUIRED\n"
        "IMAGE_WIDTH = %gin.REQUIRED\n"
        "TASK = @segmentation()\n"
        "build_model_fn.task = %TASK\n"
        "unknown_thing.size = (%IMAGE_HEIGHT, %IMAGE_WIDTH)\n"
    )
    return tmp_path


def _config(repo, name, body):
    path = repo / "configs" / name
    path.write_text("include 'configs/base.gin'\n" + body)
    return str(path)


@pytest.fixture
def repo(tmp_path, monkeypatch):
    root = _repo(tmp_path / "repo")
    monkeypatch.chdir(root)  # TRAIN_FILES is relative to the working directory, as train.py reads it.
    return root


def test_for_config_writes_the_task_dataset_once(repo, capsys):
    config = _config(
        repo,
        "cls.gin",
        "TASK = @classification()\n"
        "TRAIN_FILES = 'datasets/synthetic_classification/train-*.tfrecord'\n"
        "SIZE = 24\nIMAGE_HEIGHT = %SIZE\nIMAGE_WIDTH = 32\n",
    )
    summary = synthetic.prepare_for_config(config, repo_root=str(repo), **COUNTS)
    out = repo / "datasets" / "synthetic_classification"
    assert summary["task"] == "classification" and (summary["height"], summary["width"]) == (24, 32)
    assert json.loads((out / "dataset.json").read_text()) == summary
    assert len(tf.io.gfile.glob(str(out / "train-*.tfrecord"))) == 2
    assert len(_records(str(out / "val-*.tfrecord"))) == COUNTS["num_val"]
    before = {name: (out / name).stat().st_mtime_ns for name in os.listdir(out)}
    capsys.readouterr()

    assert synthetic.prepare_for_config(config, repo_root=str(repo), **COUNTS) is None
    assert {name: (out / name).stat().st_mtime_ns for name in os.listdir(out)} == before
    assert capsys.readouterr() == ("", "")


def test_for_config_without_task_is_segmentation_and_reads_the_config_sizes(repo):
    config = _config(repo, "seg.gin", "TRAIN_FILES = 'datasets/synthetic/train-*.tfrecord'\nIMAGE_HEIGHT = 16\n")
    assert synthetic.dataset_for_config(config, str(repo)) == (
        "segmentation",
        str(repo / "datasets" / "synthetic"),
        16,
        None,
    )
    summary = synthetic.prepare_for_config(config, repo_root=str(repo), width=8, **COUNTS)
    assert (summary["task"], summary["height"], summary["width"]) == ("segmentation", 16, 8)
    records = _records(str(repo / "datasets" / "synthetic" / "val-*.tfrecord"))
    image, mask = synthetic.make_example(0, "val", 0, 16, 8)
    assert records[0] == schema.make_example(image, "val_000000.png", mask=mask).SerializeToString()


def test_for_config_leaves_the_users_data_alone(repo, tmp_path):
    elsewhere = tmp_path / "mine"
    configs = [
        _config(repo, "mine.gin", f"TRAIN_FILES = '{elsewhere}/train-*.tfrecord'\nTASK = @regression()\n"),
        _config(repo, "near.gin", "TRAIN_FILES = 'datasets/not_synthetic/train-*.tfrecord'\n"),
        _config(repo, "deep.gin", "TRAIN_FILES = 'datasets/synthetic/x/train-*.tfrecord'\n"),
        _config(repo, "unset.gin", ""),  # TRAIN_FILES still %gin.REQUIRED.
    ]
    for config in configs:
        assert synthetic.dataset_for_config(config, str(repo)) is None
        assert synthetic.prepare_for_config(config, repo_root=str(repo), **COUNTS) is None
    assert not elsewhere.exists()
    assert os.listdir(repo) == ["configs"]


def test_for_config_refuses_a_mismatched_or_unknown_task(repo):
    seg = _config(repo, "seg.gin", "TRAIN_FILES = 'datasets/synthetic_x/train-*.tfrecord'\nIMAGE_WIDTH = 16\n")
    synthetic.prepare_for_config(seg, repo_root=str(repo), height=16, **COUNTS)
    reg = _config(repo, "reg.gin", "TASK = @regression()\nTRAIN_FILES = 'datasets/synthetic_x/train-*.tfrecord'\n")
    with pytest.raises(ValueError, match="holds a segmentation dataset .* wants regression"):
        synthetic.prepare_for_config(reg, repo_root=str(repo), **COUNTS)
    mine = _config(repo, "mine.gin", "TASK = @detection()\nTRAIN_FILES = 'datasets/synthetic_y/train-*.tfrecord'\n")
    with pytest.raises(ValueError, match="'@detection'"):
        synthetic.prepare_for_config(mine, repo_root=str(repo), **COUNTS)


def test_for_config_includes_resolve_from_the_repository_root(repo, tmp_path, monkeypatch):
    (repo / "configs" / "task.gin").write_text("TASK = @regression()\nIMAGE_WIDTH = 20\n")
    config = _config(repo, "r.gin", f"include 'configs/task.gin'\nTRAIN_FILES = '{repo}/datasets/synthetic_r/t-*'\n")
    monkeypatch.chdir(tmp_path)  # Not the repository: includes still resolve there.
    assert synthetic.dataset_for_config(config, str(repo)) == (
        "regression",
        str(repo / "datasets/synthetic_r"),
        None,
        20,
    )
    (repo / "configs" / "task.gin").unlink()
    with pytest.raises(ValueError, match="include 'configs/task.gin': no such file"):
        synthetic.dataset_for_config(config, str(repo))


def test_for_config_command_line(repo, monkeypatch, capsys):
    """The module's entry point: writes the dataset, then a silent no-op."""
    monkeypatch.setattr(synthetic, "REPO_ROOT", str(repo))
    config = _config(repo, "reg.gin", "TASK = @regression()\nTRAIN_FILES = 'datasets/synthetic_r/train-*.tfrecord'\n")
    args = [f"--for_config={config}", "--num_train=3", "--num_val=2", "--height=16", "--width=16"]
    synthetic.main(args)
    assert json.loads((repo / "datasets" / "synthetic_r" / "dataset.json").read_text())["task"] == "regression"
    capsys.readouterr()
    synthetic.main(args)
    assert capsys.readouterr() == ("", "")
    with pytest.raises(SystemExit, match="(?i)error: .*no such file"):
        synthetic.main(["--for_config=configs/missing.gin"])


@pytest.mark.parametrize(
    "name, task, folder",
    [
        ("synthetic.gin", "segmentation", "synthetic"),
        ("classification.gin", "classification", "synthetic_classification"),
        ("regression.gin", "regression", "synthetic_regression"),
    ],
)
def test_the_repository_configs_name_their_datasets(name, task, folder):
    config = os.path.join(REPO_ROOT, "configs", name)
    if not os.path.exists(config):
        pytest.skip(f"no {config}")
    cwd = os.getcwd()
    os.chdir(REPO_ROOT)
    try:
        plan = synthetic.dataset_for_config(config)
    finally:
        os.chdir(cwd)
    assert plan == (task, os.path.join(REPO_ROOT, "datasets", folder), 64, 64)
