"""A new dataset needs one gin file and no code: other class count, non-square images,
palette PNG masks, converted by tools/build_tfrecords.py."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from tests.helpers import run_script

HEIGHT, WIDTH = 24, 40  # Non-square; divisible by 2**depth for depth 2.
CLASS_NAMES = ["sky", "road", "car"]


def _write_folder(root, count, seed):
    rng = np.random.default_rng(seed)
    images, masks = root / "images", root / "masks"
    images.mkdir(parents=True)
    masks.mkdir(parents=True)
    for i in range(count):
        mask = np.zeros((HEIGHT, WIDTH), np.uint8)
        mask[HEIGHT // 2 :] = 1
        top, left = rng.integers(0, HEIGHT - 8), rng.integers(0, WIDTH - 10)
        mask[top : top + 8, left : left + 10] = 2
        mask[0, :] = 255
        image = (np.stack([mask * 80] * 3, -1) + rng.integers(0, 40, (HEIGHT, WIDTH, 3))).astype(np.uint8)
        Image.fromarray(image).save(images / f"img{i:03d}.jpg" if i % 2 else images / f"img{i:03d}.png")
        palette_mask = Image.fromarray(mask, mode="L").convert("P")  # VOC-style palette PNG.
        palette_mask.save(masks / f"img{i:03d}.png")
    return images, masks


@pytest.mark.slow
def test_new_dataset_from_one_gin_file(tmp_path):
    for split, count, seed in (("train", 10, 0), ("val", 5, 1)):
        images, masks = _write_folder(tmp_path / split, count, seed)
        result = run_script(
            "tools/build_tfrecords.py",
            f"--image_dir={images}",
            f"--mask_dir={masks}",
            f"--output_prefix={tmp_path / 'records' / split}",
            "--num_shards=2",
            f"--class_names={','.join(CLASS_NAMES)}",
        )
        assert f"{count} examples -> 2 shard(s)" in result.stdout
        assert "road" in result.stdout and "ignore" in result.stdout

    config = tmp_path / "roads.gin"
    config.write_text(
        "include 'configs/base.gin'\n"
        f"TRAIN_FILES = '{tmp_path}/records/train-*.tfrecord'\n"
        f"VAL_FILES = '{tmp_path}/records/val-*.tfrecord'\n"
        "NUM_CLASSES = 3\n"
        f"CLASS_NAMES = {CLASS_NAMES}\n"
        f"IMAGE_HEIGHT = {HEIGHT}\n"
        f"IMAGE_WIDTH = {WIDTH}\n"
        f"MODEL_DIR = '{tmp_path}/model'\n"
        "TRAIN_STEPS = 4\nEVAL_EVERY_STEPS = 4\nTRAIN_BATCH_SIZE = 2\nEVAL_BATCH_SIZE = 2\n"
        "unet.base_filters = 4\nunet.depth = 2\n"
    )
    # JPEG images keep their bytes and are tagged as JPEG, as DeepLab's readers expect.
    import tensorflow as tf

    formats = set()
    for path in (tmp_path / "records").glob("val-*.tfrecord"):
        for record in tf.compat.v1.io.tf_record_iterator(str(path)):
            feature = tf.train.Example.FromString(record).features.feature
            image_format = feature["image/format"].bytes_list.value[0]
            formats.add(image_format)
            assert (
                feature["image/encoded"]
                .bytes_list.value[0]
                .startswith(b"\xff\xd8" if image_format == b"jpeg" else b"\x89PNG")
            )
    assert formats == {b"jpeg", b"png"}
    run_script("train.py", f"--gin_file={config}")
    with open(tmp_path / "model" / "eval" / "results.jsonl") as f:
        record = json.loads(f.readlines()[-1])
    assert record["global_step"] == 4
    assert record["num_examples"] == 5
    assert list(record["per_class"]) == CLASS_NAMES
    confusion = np.array(record["confusion_matrix"])
    # Every non-ignored val pixel is counted once: 5 images, the top row ignored.
    assert confusion.shape == (3, 3) and confusion.sum() == 5 * (HEIGHT - 1) * WIDTH


def test_build_tfrecords_names_the_image_without_a_mask(tmp_path):
    images, masks = _write_folder(tmp_path, 2, 0)
    os.remove(masks / "img001.png")
    result = run_script(
        "tools/build_tfrecords.py",
        f"--image_dir={images}",
        f"--mask_dir={masks}",
        f"--output_prefix={tmp_path / 'out'}",
        check=False,
    )
    assert result.returncode == 1
    assert "img001.jpg: no mask" in result.stderr
    assert not list(tmp_path.glob("out-*"))


def test_build_tfrecords_rejects_rgb_and_mismatched_masks(tmp_path):
    images, masks = _write_folder(tmp_path, 2, 0)
    Image.new("RGB", (WIDTH, HEIGHT)).save(masks / "img000.png")
    result = run_script(
        "tools/build_tfrecords.py",
        f"--image_dir={images}",
        f"--mask_dir={masks}",
        f"--output_prefix={tmp_path / 'o'}",
        check=False,
    )
    assert result.returncode == 1 and "img000.png: mask mode RGB" in result.stderr
    Image.new("L", (WIDTH + 1, HEIGHT)).save(masks / "img000.png")
    result = run_script(
        "tools/build_tfrecords.py",
        f"--image_dir={images}",
        f"--mask_dir={masks}",
        f"--output_prefix={tmp_path / 'o'}",
        check=False,
    )
    assert result.returncode == 1 and "mask is 41x24 but its image" in result.stderr


def _voc_tree(root, ids, listed):
    """A PASCAL VOC-style tree: JPEGImages, SegmentationClass (palette PNGs), a split list."""
    from data import synthetic

    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True)
    for i, name in enumerate(ids):
        image, mask = synthetic.make_example(4, "train", i, HEIGHT, WIDTH)
        Image.fromarray(image).save(root / "JPEGImages" / f"{name}.jpg", quality=90)
        palette = Image.fromarray(np.where(mask == 255, 255, mask % 3).astype(np.uint8), mode="L").convert("P")
        palette.save(root / "SegmentationClass" / f"{name}.png")
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("\n".join(listed) + "\n")


def test_build_tfrecords_reads_a_voc_tree_in_split_order(tmp_path):
    import tensorflow as tf

    from tools.build_tfrecords import build

    root = tmp_path / "VOC2012"
    _voc_tree(root, ["2007_000032", "2007_000039", "2007_000063"], ["2007_000063", "2007_000032"])
    stats = build(None, None, str(tmp_path / "out" / "train"), 1, voc_root=str(root), split="train")
    assert stats["num_examples"] == 2  # Only the listed ids, not every image in JPEGImages.
    names = [
        tf.train.Example.FromString(record).features.feature["image/filename"].bytes_list.value[0].decode()
        for record in tf.compat.v1.io.tf_record_iterator(stats["paths"][0])
    ]
    assert names == ["2007_000063.jpg", "2007_000032.jpg"]


def test_build_tfrecords_names_the_voc_id_without_a_mask(tmp_path):
    from common.errors import DataError
    from tools.build_tfrecords import build

    root = tmp_path / "VOC2012"
    _voc_tree(root, ["a", "b"], ["a", "b"])
    (root / "SegmentationClass" / "b.png").unlink()
    with pytest.raises(DataError, match=r"train.txt: line 2, id b: no mask .*SegmentationClass/b.png"):
        build(None, None, str(tmp_path / "out"), 1, voc_root=str(root))
    with pytest.raises(DataError, match="either --voc_root"):
        build(str(root), str(root), str(tmp_path / "out"), 1, voc_root=str(root))
