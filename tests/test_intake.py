"""Your data in one command: tools/build_dataset.py from folders as people keep them
(data/sample_folders.py: JPEG and PNG of many sizes, some with an EXIF orientation) to
records, a split, a report and a gin file; and the converter never mixes, misaligns or
accepts a broken image (data/images.py, data/writer.py)."""

import hashlib
import io
import json
import os
import re
import resource
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageOps

from common import files
from common.errors import DataError
from data import images, sample_folders, schema, sources, writer
from tests.helpers import run_in_process, run_script
from tools import build_dataset


def _records(pattern):
    """`{file name: (image pixels, label)}` of every record the pattern matches, decoded as training does."""
    found = {}
    for path in sorted(tf.io.gfile.glob(pattern)):
        if path.endswith(".json"):
            continue
        for record in tf.compat.v1.io.tf_record_iterator(path):
            feature = tf.train.Example.FromString(record).features.feature
            name = feature[schema.IMAGE_FILENAME].bytes_list.value[0].decode()
            pixels = schema.decode_image(feature[schema.IMAGE_ENCODED].bytes_list.value[0]).numpy()
            if schema.MASK_ENCODED in feature:
                label = tf.io.decode_png(feature[schema.MASK_ENCODED].bytes_list.value[0]).numpy()[:, :, 0]
            elif schema.CLASS_LABEL in feature:
                label = feature[schema.CLASS_LABEL].int64_list.value[0]
            else:
                label = list(feature[schema.REGRESSION_TARGET].float_list.value)
            assert name not in found, f"{name} twice"
            found[name] = (pixels, label)
    return found


def _build(tmp_path, **kwargs):
    kwargs.setdefault("measure_steps", 0)
    return build_dataset.build("mine", output_dir=str(tmp_path / "ds"), config=str(tmp_path / "mine.gin"), **kwargs)


def _fingerprint(folder):
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.iterdir()) if path.is_file()
    }


@pytest.fixture(scope="module")
def segmentation(tmp_path_factory):
    root = tmp_path_factory.mktemp("intake")
    masks = sample_folders.segmentation_folder(root / "folder")
    report = _build(root, image_dir=str(root / "folder/images"), mask_dir=str(root / "folder/masks"),
                    num_shards=3)  # fmt: skip
    return root, masks, report


def test_exif_orientation_turns_pixels_as_pil_does():
    """Every EXIF orientation, on a lossless PNG: `read_image_file` equals PIL's exif_transpose."""
    yy, xx = np.mgrid[0:16, 0:24]  # Smooth (JPEG keeps it within a few levels), and no turn of it equals another.
    stored = np.stack([xx * 10, yy * 15, (xx * yy) % 200], -1).astype(np.uint8)
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        for kind in ("PNG", "JPEG"):
            buffer = io.BytesIO()
            Image.fromarray(stored).save(buffer, kind, exif=exif, quality=100)
            data = buffer.getvalue()
            expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
            got = images.decode_image_bytes(data, f"o{orientation}.{kind}")
            assert got.shape == expected.shape, (orientation, kind)
            if kind == "PNG":
                np.testing.assert_array_equal(got, expected)
            else:  # TensorFlow's JPEG decoder is not PIL's: within a few levels, the same turn.
                assert np.abs(got.astype(int) - expected).mean() < 4, (orientation, kind)


def test_segmentation_records_hold_the_shown_image_and_its_mask(segmentation):
    """JPEGs with an EXIF turn (one square) are stored upright: each record's mask is the mask drawn
    on the photo as shown, and its pixels are the shown image (within JPEG's loss; unturned they
    would differ by about 60 levels)."""
    root, masks, report = segmentation
    records = _records(str(root / "ds" / "*.tfrecord"))
    assert sorted(records) == sorted(masks)
    turned = 0
    for name, (pixels, mask) in records.items():
        np.testing.assert_array_equal(mask, masks[name])
        index = int(name[3:6])
        shown, _ = sample_folders.synthetic.make_example(0, "train", index, *masks[name].shape)
        error = np.abs(pixels.astype(int) - shown).mean()
        assert error < 15, name  # JPEG's loss on these textured pictures: about 9 levels.
        if masks[name].shape[0] == masks[name].shape[1]:  # Square: unturned, it would have fit too.
            assert np.abs(np.rot90(pixels).astype(int) - shown).mean() > 2 * error, name
        turned += sample_folders._orientation(index) != 1
    assert turned >= 6
    assert report["splits"]["train"]["examples"] + report["splits"]["val"]["examples"] == len(masks)


def test_split_lists_name_each_record_in_order_and_the_split_is_seeded(segmentation, tmp_path):
    root, masks, report = segmentation
    for split in sources.SPLITS:
        listed = (root / "ds" / f"{split}.txt").read_text().splitlines()
        assert listed[0].startswith("#")
        names = []
        for path in sorted((root / "ds").glob(f"{split}-*.tfrecord")):
            names += [
                tf.train.Example.FromString(r).features.feature[schema.IMAGE_FILENAME].bytes_list.value[0].decode()
                for r in tf.compat.v1.io.tf_record_iterator(str(path))
            ]
        assert listed[1:] == names
    assert report["splits"]["val"]["examples"] == round(len(masks) * 0.2)
    items = sources.segmentation(str(root / "folder/images"), str(root / "folder/masks"))
    again = sources.split(items, 0.2, 42)
    assert [os.path.basename(i.image) for i in again["val"]] == (root / "ds/val.txt").read_text().splitlines()[1:]
    other = sources.split(items, 0.2, 7)
    assert other["val"] != again["val"]


def test_the_report_counts_pixels_as_numpy_does(segmentation):
    root, masks, report = segmentation
    val = set((root / "ds/val.txt").read_text().splitlines()[1:])
    for split, names in (("val", val), ("train", set(masks) - val)):
        counts = np.bincount(np.concatenate([masks[n].ravel() for n in names]), minlength=256)
        pixels = report["splits"][split]["pixels"]
        assert [pixels[f"class_{i}"] for i in range(4)] == counts[:4].tolist()
        assert pixels["ignore"] == counts[255]
    saved = json.loads((root / "ds/report.json").read_text())
    assert saved["splits"] == report["splits"] and (root / "ds/report.txt").read_text().startswith("mine:")


def test_a_rebuild_replaces_the_dataset_whole(segmentation, tmp_path):
    """Another shard count leaves the same records, no old shard; a failed rebuild leaves the old one."""
    root, masks, _ = segmentation
    folder = root / "folder"
    out = tmp_path / "ds"
    _build(tmp_path, image_dir=str(folder / "images"), mask_dir=str(folder / "masks"), num_shards=3)
    _build(tmp_path, image_dir=str(folder / "images"), mask_dir=str(folder / "masks"), num_shards=2)
    assert len(list(out.glob("train-*.tfrecord"))) == 2 and len(list(out.glob("val-*.tfrecord"))) == 2
    assert len(_records(str(out / "*.tfrecord"))) == len(masks)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    before = _fingerprint(out)
    broken = tmp_path / "broken"
    (broken / "masks").mkdir(parents=True)
    (broken / "images").mkdir()
    for path in (folder / "images").iterdir():
        (broken / "images" / path.name).write_bytes(path.read_bytes())
    for path in (folder / "masks").iterdir():
        (broken / "masks" / path.name).write_bytes(path.read_bytes())
    jpeg = broken / "images" / "img010.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[: -len(jpeg.read_bytes()) // 3])
    with pytest.raises(DataError, match=r"^\S*img010.jpg: cannot decode image: [^\n]+$"):
        _build(tmp_path, image_dir=str(broken / "images"), mask_dir=str(broken / "masks"), num_shards=4)
    assert _fingerprint(out) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_mask_with_an_upper_case_extension_is_read_and_one_without_an_image_is_named(tmp_path, capsys):
    shown = sample_folders.segmentation_folder(tmp_path / "folder", count=4)
    masks = tmp_path / "folder" / "masks"
    os.replace(masks / "img001.png", masks / "img001.PNG")
    (masks / "img009.png").write_bytes((masks / "img002.png").read_bytes())  # Its image was deleted.
    _build(tmp_path, image_dir=str(tmp_path / "folder/images"), mask_dir=str(masks))
    records = _records(str(tmp_path / "ds" / "*.tfrecord"))
    assert records.keys() == shown.keys()
    for name, (_, mask) in records.items():
        np.testing.assert_array_equal(mask, shown[name], err_msg=name)
    out = capsys.readouterr().out
    assert f"notice: 1 mask(s) in {masks} have no image and are left out (first: {masks / 'img009.png'})" in out
    (masks / "img001.png").write_bytes((masks / "img001.PNG").read_bytes())  # Which one? Refused, naming both.
    with pytest.raises(DataError, match=r"img001.jpg: two masks, img001.PNG and img001.png in "):
        _build(tmp_path, image_dir=str(tmp_path / "folder/images"), mask_dir=str(masks))


def test_what_libjpeg_prints_joins_the_one_line_that_names_the_file(tmp_path, capfd, monkeypatch):
    """libjpeg inside TensorFlow prints its reason to C's stderr ("Bogus Huffman table definition"),
    a line naming no file, before TensorFlow's own error: both become one line naming the file; a
    warning on an image that decodes becomes a notice naming it."""
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), np.uint8)).save(buffer, "JPEG")
    data = buffer.getvalue()
    bogus = data[:200] + b"\xff\xc4\x00\x01" + data[204:]  # A Huffman table segment 1 byte long.
    with pytest.raises(DataError) as raised:
        images.decode_image_bytes(bogus, "bad.jpg")
    assert re.fullmatch(r"bad.jpg: cannot decode image: Bogus Huffman table definition; jpeg::Uncompress failed\..*",
                        str(raised.value)), raised.value  # fmt: skip
    assert capfd.readouterr().err == ""  # Nothing on the terminal but the error the caller prints.

    def warns(encoded):  # As libjpeg does for a JPEG it decodes despite a fault.
        os.write(2, b"Corrupt JPEG data: 2 extraneous bytes before marker 0xd9\n")
        return tf.io.decode_jpeg(encoded, channels=3)

    monkeypatch.setattr(images, "decode_image", warns)
    assert images.decode_image_bytes(data, "warned.jpg").shape == (16, 16, 3)
    out, err = capfd.readouterr()
    assert (out, err) == ("notice: warned.jpg: Corrupt JPEG data: 2 extraneous bytes before marker 0xd9\n", "")


def test_one_split_rebuilt_with_fewer_shards_leaves_no_old_shard(tmp_path):
    """tools/build_tfrecords.py's writer: 4 then 2 shards under one prefix read 4 records, not 6."""
    examples = [{"image": np.full((4, 4, 3), i, np.uint8), "filename": f"{i}.png", "class_label": i} for i in range(4)]
    writer.write_shards(examples, 4, str(tmp_path / "train"), 4, progress=False)
    writer.write_shards(examples, 4, str(tmp_path / "train"), 2, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"train-0000{i}-of-00002.tfrecord{suffix}" for i in range(2) for suffix in ("", ".index.json")
    )
    assert len(_records(str(tmp_path / "train-*"))) == 4
    with pytest.raises(DataError):  # A write that fails leaves the split as it was, and no staging folder.
        writer.write_shards(examples[:3], 4, str(tmp_path / "train"), 1, progress=False)
    assert len(_records(str(tmp_path / "train-*"))) == 4 and len(list(tmp_path.iterdir())) == 4


def _chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _grey_png(width, height, rows=True):
    """A black grey PNG of `width` x `height`, compressed row by row (never held whole in memory);
    with `rows=False`, its header alone (what a header reader sees)."""
    header = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    if not rows:
        return header + _chunk(b"IEND", b"")
    compressor, row, data = zlib.compressobj(9), bytes(width + 1), []
    for _ in range(height):
        data.append(compressor.compress(row))
    data.append(compressor.flush())
    return header + _chunk(b"IDAT", b"".join(data)) + _chunk(b"IEND", b"")


def test_an_image_over_the_pixel_limit_is_refused_from_its_header(tmp_path):
    """A 20000x20000 PNG of 389 KB (and a declared 50000x50000 one) stop the converter and
    predict.py with one line, before any decoding: memory does not grow by the 1.2 GB a decode takes."""
    from tools.predict import load_image

    (tmp_path / "huge.png").write_bytes(_grey_png(20000, 20000))
    assert os.path.getsize(tmp_path / "huge.png") < 1_000_000
    (tmp_path / "declared.png").write_bytes(_grey_png(50000, 50000, rows=False))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for name, pixels in (("huge.png", "400.0"), ("declared.png", "2500.0")):
        path = str(tmp_path / name)
        message = rf"^\S*{name}: \d+x\d+ is {pixels} megapixels, over the limit of 50 \(--max_pixels"
        with pytest.raises(DataError, match=message):
            sources.Item(path, class_id=0).read(name)
        with pytest.raises(DataError, match=message):
            load_image(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 300_000  # KB: no decode happened.
    with pytest.raises(DataError, match="is 400.0 megapixels, over the limit of 100"):
        images.read_image_file(str(tmp_path / "huge.png"), max_pixels=100_000_000)
    sample_folders.classification_folder(tmp_path / "folder", per_class=2)
    _build(tmp_path, image_dir=str(tmp_path / "folder"))
    before = _fingerprint(tmp_path / "ds")
    os.replace(tmp_path / "huge.png", tmp_path / "folder" / "square" / "huge.png")
    with pytest.raises(DataError, match=r"square/huge.png: 20000x20000 is 400.0 megapixels"):
        _build(tmp_path, image_dir=str(tmp_path / "folder"))
    assert _fingerprint(tmp_path / "ds") == before


def test_colour_masks_become_class_ids_and_an_unknown_colour_is_named(tmp_path):
    masks = sample_folders.colour_folder(tmp_path / "folder", count=8)
    folder = tmp_path / "folder"
    report = _build(tmp_path, image_dir=str(folder / "images"), mask_dir=str(folder / "masks"),
                    mask_colors=str(folder / "colours.csv"))  # fmt: skip
    assert report["class_names"] == ["background", "circle", "square", "triangle"]
    for name, (_, mask) in _records(str(tmp_path / "ds" / "*.tfrecord")).items():
        np.testing.assert_array_equal(mask, masks[name])  # 255,255,255 is the table's ignore row.
    before = _fingerprint(tmp_path / "ds")
    odd = np.array(Image.open(folder / "masks" / "img005.png"))
    odd[:3, :2] = (1, 2, 3)
    Image.fromarray(odd).save(folder / "masks" / "img005.png")
    with pytest.raises(DataError) as error:
        _build(tmp_path, image_dir=str(folder / "images"), mask_dir=str(folder / "masks"),
               mask_colors=str(folder / "colours.csv"))  # fmt: skip
    assert str(error.value).startswith(
        f"{folder / 'masks' / 'img005.png'}: colour(s) not in --mask_colors: (1, 2, 3) (6 pixels)"
    )
    assert _fingerprint(tmp_path / "ds") == before
    _build(tmp_path, image_dir=str(folder / "images"), mask_dir=str(folder / "masks"),
           mask_colors=str(folder / "colours.csv"), unknown_colors="ignore")  # fmt: skip
    mask = _records(str(tmp_path / "ds" / "*.tfrecord"))["img005.png"][1]
    expected = masks["img005.png"].copy()
    expected[:3, :2] = 255
    np.testing.assert_array_equal(mask, expected)


@pytest.mark.parametrize(
    "text, suffix",
    [
        ("name,r,g,b\nsky,0,0,255\nroad,128,64,128\nvoid,0,0,0\nignore,255,255,255\n", ".csv"),
        ("0 0 255\tsky\n128 64 128\troad\n0 0 0\tvoid\n255 255 255\tignore\n", ".txt"),  # CamVid's label_colors.txt
        ('{"sky": [0, 0, 255], "road": [128, 64, 128], "void": [0, 0, 0], "ignore": [255, 255, 255]}', ".json"),
        ("class,colour\nsky,#0000ff\nroad,#804080\nvoid,#000000\nignore,#FFFFFF\n", ".csv"),  # Hex.
    ],
)
def test_colour_tables_read_in_the_published_forms(tmp_path, text, suffix):
    path = tmp_path / f"table{suffix}"
    path.write_text(text)
    table = images.ColourTable.read(str(path))
    assert table.names == ["sky", "road", "void"]
    rgb = np.array([[[0, 0, 255], [128, 64, 128]], [[0, 0, 0], [255, 255, 255]]], np.uint8)
    np.testing.assert_array_equal(table.class_ids(rgb, "m.png"), [[0, 1], [2, 255]])


@pytest.mark.parametrize(
    "text, message",
    [
        ("sky,0,0,255\nroad,0,0,255\n", r"table.csv: line 2: colour \(0, 0, 255\) is also 'sky'"),
        # Only the first line may be a header: a second row without a colour is named, not skipped.
        ("name,r,g,b\nsky;0;0;255\n", r"table.csv: line 2: expected name,r,g,b or r,g,b,name or name,#rrggbb, got"),
        ("sky,blue\nroad,grey\n", r"table.csv: line 2: expected name,r,g,b"),
        ("sky,#00f\n", r"table.csv: line 1: expected name,r,g,b"),  # Not a header: it has a #colour.
        ("background\nsky,0,0,255\n", r"table.csv: line 1: expected name,r,g,b"),  # One name: not a header.
        # A colour first would read as a comment, and the ids after it would move.
        ("sky,0,0,255\n#ff0000,red\n", r"table.csv: line 2: a line starting with a colour reads as a # comment"),
    ],
)
def test_a_colour_table_row_it_cannot_use_is_refused_naming_the_row(tmp_path, text, message):
    path = tmp_path / "table.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        images.ColourTable.read(str(path))


def _remask(folder, value_of):
    """Rewrites the sample folder's masks with each class id replaced by `value_of[id]`."""
    for path in (folder / "masks").iterdir():
        mask = np.asarray(Image.open(path))
        Image.fromarray(np.vectorize(value_of.get)(mask).astype(np.uint8)).save(path)


@pytest.mark.parametrize(
    "value_of, refused, values",
    [
        # Binary masks, the object 255 (as most tools save them): refused, not read as all ignore.
        (
            {0: 0, 1: 255, 2: 255, 3: 255, 255: 255},
            r"the masks hold only 0 and 255, and 255 is the ignore label \([\d.]+% of their pixels\): binary "
            r"masks whose object is 255\? --mask_values=0,255 reads 255 as class 1",
            "0,255",
        ),
        # A small object (cracks, vessels: a few per cent of the pixels) is refused as well.
        ({0: 0, 1: 0, 2: 0, 3: 255, 255: 0}, r"the masks hold only 0 and 255", "0,255"),
        # Grey levels: refused, not NUM_CLASSES = 201 with 198 empty classes.
        (
            {0: 0, 1: 100, 2: 200, 3: 200, 255: 255},
            r"the masks hold the values 0, 100, 200 \(3 of the ids up to 200\): grey levels rather than class "
            r"ids 0, 1, 2, \.\.\.\? --mask_values=0,100,200,255 reads them as classes in that order; if they are "
            r"class ids, --class_names names the classes",
            "0,100,200",
        ),
        # Evenly spaced levels, rounded (255 k / 4): no common divisor, refused all the same.
        ({0: 0, 1: 64, 2: 128, 3: 191, 255: 255}, r"the masks hold the values 0, 64, 128, 191 \(4 of", "0,64,128,191"),
    ],
)
def test_masks_whose_values_are_not_class_ids_are_refused_and_mask_values_reads_them(
    tmp_path, value_of, refused, values
):
    shown = sample_folders.segmentation_folder(tmp_path / "folder", count=6)
    _remask(tmp_path / "folder", value_of)
    folders = {"image_dir": str(tmp_path / "folder/images"), "mask_dir": str(tmp_path / "folder/masks")}
    with pytest.raises(DataError, match=refused):
        _build(tmp_path, **folders)
    assert not (tmp_path / "ds").exists() and not (tmp_path / "mine.gin").exists()
    report = _build(tmp_path, mask_values=values.split(","), **folders)
    values = [int(value) for value in values.split(",")]
    assert report["class_names"] == [f"class_{i}" for i in range(len(values))]
    expected = {  # Each listed value its position; 255 unlisted stays the ignore label.
        name: np.vectorize(lambda v: values.index(value_of[v]) if value_of[v] in values else 255)(mask)
        for name, mask in shown.items()
    }
    records = _records(str(tmp_path / "ds" / "*.tfrecord"))
    assert records.keys() == expected.keys()
    for name, (_, mask) in records.items():
        np.testing.assert_array_equal(mask, expected[name], err_msg=name)


def test_a_few_class_ids_of_many_are_not_taken_for_grey_levels(tmp_path):
    """VOC's background and person alone (0 and 15, 255 at the borders): class ids, built as such."""
    sample_folders.segmentation_folder(tmp_path / "folder", count=4)
    _remask(tmp_path / "folder", {0: 0, 1: 15, 2: 15, 3: 15, 255: 255})
    report = _build(tmp_path, image_dir=str(tmp_path / "folder/images"), mask_dir=str(tmp_path / "folder/masks"))
    assert report["class_names"] == [f"class_{i}" for i in range(16)]


def test_a_mask_value_not_in_mask_values_is_named(tmp_path):
    sample_folders.segmentation_folder(tmp_path / "folder", count=4)
    folders = {"image_dir": str(tmp_path / "folder/images"), "mask_dir": str(tmp_path / "folder/masks")}
    not_listed = r"masks/.*\.png: value 3 in a mask is not in --mask_values \(0, 1, 2; 255 is ignore unless listed\)"
    with pytest.raises(DataError, match=not_listed):
        _build(tmp_path, mask_values=["0", "1", "2"], **folders)
    with pytest.raises(DataError, match=r"--class_names has 2 names for 4 --mask_values"):
        _build(tmp_path, mask_values=["0", "1", "2", "3"], class_names=["a", "b"], **folders)
    with pytest.raises(DataError, match=r"--mask_values=0,0: distinct integers"):
        _build(tmp_path, mask_values=["0", "0"], **folders)


def test_class_folders_split_by_class_and_keep_their_labels(tmp_path, capsys):
    labels = sample_folders.classification_folder(tmp_path / "folder", per_class=5)
    # Files it does not read: named in a notice (an iPhone photo, a note), never dropped in silence.
    (tmp_path / "folder" / "circle" / "IMG_0002.HEIC").write_bytes(b"\0\0\0\x18ftypheic")
    (tmp_path / "folder" / "notes.txt").write_text("shapes")
    (tmp_path / "folder" / "square" / ".DS_Store").write_bytes(b"\0")  # Hidden: the system's, not data.
    report = _build(tmp_path, image_dir=str(tmp_path / "folder"))
    notices = [line for line in capsys.readouterr().out.splitlines() if "are not images" in line]
    assert notices == [
        f"notice: 2 file(s) in {tmp_path / 'folder'} are not images this tool reads (.heic, .txt; it reads "
        f"{', '.join(sources.IMAGE_EXTENSIONS)}) and are left out (first: {tmp_path / 'folder/notes.txt'})"
    ]
    assert report["task"] == "classification" and report["class_names"] == ["circle", "square", "triangle"]
    assert report["splits"]["val"]["examples_per_class"] == {"circle": 1, "square": 1, "triangle": 1}
    records = _records(str(tmp_path / "ds" / "*.tfrecord"))
    assert {name: label for name, (_, label) in records.items()} == labels
    gin_text = (tmp_path / "mine.gin").read_text()
    assert "TASK = @classification()" in gin_text and "CLASS_NAMES = ['circle', 'square', 'triangle']" in gin_text


def test_folders_already_split_keep_their_split(tmp_path):
    for split, count in (("train", 6), ("val", 2)):
        sample_folders.segmentation_folder(tmp_path / "images_root" / split, count=count, seed=len(split))
    for split in ("train", "val"):  # images/ and masks/ of each split, as two parallel trees.
        os.makedirs(tmp_path / "masks" / split)
        for path in (tmp_path / "images_root" / split / "masks").iterdir():
            os.replace(path, tmp_path / "masks" / split / path.name)
        (tmp_path / "images_root" / split / "masks").rmdir()
        os.replace(tmp_path / "images_root" / split / "images", tmp_path / f"{split}_images")
        (tmp_path / "images_root" / split).rmdir()
        os.makedirs(tmp_path / "images", exist_ok=True)
        os.replace(tmp_path / f"{split}_images", tmp_path / "images" / split)
    report = _build(tmp_path, image_dir=str(tmp_path / "images"), mask_dir=str(tmp_path / "masks"))
    assert [report["splits"][s]["examples"] for s in ("train", "val")] == [6, 2]
    assert report["split"].startswith("the folders")


def test_a_csv_of_targets_keeps_each_files_target(tmp_path, capsys):
    targets = sample_folders.regression_folder(tmp_path / "folder", count=10)
    Image.new("RGB", (8, 8)).save(tmp_path / "folder" / "images" / "stray.png")
    report = _build(tmp_path, image_dir=str(tmp_path / "folder/images"), targets=str(tmp_path / "folder/targets.csv"))
    assert "1 image(s) in" in capsys.readouterr().out  # Not in the CSV: left out, with a notice.
    assert report["class_names"] == ["coverage"]
    records = _records(str(tmp_path / "ds" / "*.tfrecord"))
    assert {name: pytest.approx(label[0], abs=1e-6) for name, (_, label) in records.items()} == targets
    val = [targets[name] for name in (tmp_path / "ds/val.txt").read_text().splitlines()[1:]]
    assert report["splits"]["val"]["targets"]["coverage"]["max"] == pytest.approx(max(val), abs=1e-6)


@pytest.mark.parametrize(
    "rows, message",
    [
        ("file,y\nimg000.jpg,0.5\nmissing.png,0.1\n", r"targets.csv: line 3: no image .*missing.png"),
        ("img000.jpg,0.5\nimg001.png,high\n", r"targets.csv: line 2: targets must be numbers"),
        ("img000.jpg,0.5\nimg001.png,0.1,0.2\n", r"targets.csv: line 2: 2 target\(s\), the rows before it have 1"),
        ("img000.jpg,0.5\nimg000.jpg,0.1\n", r"targets.csv: line 2: img000.jpg is also on line 1"),
        # No header, the first row's target missing: that row, not a header naming a target ''.
        ("img000.jpg,\nimg001.png,0.1\n", r"targets.csv: line 1: targets must be numbers, got \[''\]"),
        ("img000.jpg,NA\nimg001.png,0.1\n", r"targets.csv: line 1: targets must be numbers, got \['NA'\]"),
        ("gone.jpg,0.5\nimg001.png,0.1\n", r"targets.csv: line 1: no image .*gone.jpg"),  # Not a header either.
    ],
)
def test_a_bad_csv_row_is_named(tmp_path, rows, message):
    sample_folders.regression_folder(tmp_path / "folder", count=2)
    (tmp_path / "folder" / "targets.csv").write_text(rows)
    with pytest.raises(DataError, match=message):
        _build(tmp_path, image_dir=str(tmp_path / "folder/images"), targets=str(tmp_path / "folder/targets.csv"))


def test_it_never_replaces_what_it_did_not_write(tmp_path):
    sample_folders.classification_folder(tmp_path / "folder", per_class=2)
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="ds exists and was not written by tools/build_dataset.py"):
        _build(tmp_path, image_dir=str(tmp_path / "folder"))
    (tmp_path / "ds" / "notes.txt").unlink()
    (tmp_path / "mine.gin").write_text("include 'configs/base.gin'\n")
    with pytest.raises(DataError, match="mine.gin exists and was not written by"):
        _build(tmp_path, image_dir=str(tmp_path / "folder"))
    with pytest.raises(DataError, match="holds the input"):
        build_dataset.build("x", image_dir=str(tmp_path / "folder"), output_dir=str(tmp_path), measure_steps=0)


def test_an_interrupted_swap_is_put_back(tmp_path):
    (tmp_path / ".ds.old-123").mkdir()
    (tmp_path / ".ds.old-123" / "a").write_text("old")
    files.restore_folder(str(tmp_path / "ds"), log=lambda line: None)
    assert (tmp_path / "ds" / "a").read_text() == "old" and not (tmp_path / ".ds.old-123").exists()


def test_the_training_settings_follow_the_image_sizes():
    small = build_dataset.choose_training("segmentation", [(37, 53), (61, 45)])
    assert (small["IMAGE_HEIGHT"], small["IMAGE_WIDTH"], small["TRAIN_BATCH_SIZE"]) == (64, 56, 16)
    large = build_dataset.choose_training("segmentation", [(1024, 2048), (900, 1200)])
    assert (large["IMAGE_HEIGHT"], large["IMAGE_WIDTH"], large["TRAIN_BATCH_SIZE"]) == (256, 256, 4)
    assert "MAX_RESIZE_VALUE" not in large  # Segmentation crops at the images' own resolution.
    whole = build_dataset.choose_training("classification", [(1024, 2048), (900, 1200)])
    assert whole["MAX_RESIZE_VALUE"] == 256 and whole["EVAL_RESIZE"] == (None, 256)
    assert (whole["IMAGE_HEIGHT"], whole["IMAGE_WIDTH"]) == (192, 256)  # 1024x2048 -> 128x256, 900x1200 -> 192x256.


def test_an_empty_shard_is_named_at_the_start(tmp_path, capsys):
    from data.input import make_input_fn
    from models.classification import Classification

    examples = [{"image": np.zeros((8, 8, 3), np.uint8), "filename": f"{i}.png", "class_label": 0} for i in range(2)]
    writer.write_shards(examples, 2, str(tmp_path / "train"), 2, progress=False)
    (tmp_path / "train-00002-of-00003.tfrecord").write_bytes(b"")
    make_input_fn(str(tmp_path / "train-*.tfrecord"), 2, 8, 8, Classification(2), training=False)
    line = capsys.readouterr().err.strip()
    assert line == f"notice: 1 of the 3 shards of {tmp_path}/train-*.tfrecord hold no records: " + str(
        tmp_path / "train-00002-of-00003.tfrecord"
    )


@pytest.mark.slow
def test_from_a_folder_to_a_trained_and_evaluated_model_in_one_command(tmp_path):
    """The documented path for segmentation: tools/build_dataset.py as a script, then train.py on
    the gin file it wrote (a few steps of a small net) and evaluate.py, in this process.
    docs/data.md runs the classification and regression commands the same way, as processes
    (test_docs), and the tests above check what the tool writes for each task (records,
    labels, targets, CLASS_NAMES), so one task trains here."""
    masks = sample_folders.segmentation_folder(tmp_path / "folder")
    config = tmp_path / "mine.gin"
    result = run_script("tools/build_dataset.py", "--name=mine", f"--image_dir={tmp_path / 'folder/images'}",
                        f"--mask_dir={tmp_path / 'folder/masks'}", f"--output_dir={tmp_path / 'ds'}",
                        f"--config={config}", "--measure_steps=2")  # fmt: skip
    assert "steps/s measured here" in result.stdout and f"next: python train.py --gin_file={config}" in result.stdout
    small = ["--gin_param=TRAIN_STEPS = 4", "--gin_param=EVAL_EVERY_STEPS = 4", "--gin_param=unet.base_filters = 4",
             f"--gin_param=MODEL_DIR = '{tmp_path / 'run'}'"]  # fmt: skip
    run_in_process("train.py", f"--gin_file={config}", *small)
    run_in_process("evaluate.py", f"--gin_file={config}", *small[:1], *small[2:], "--eval_name=again")
    val = (tmp_path / "ds" / "val.txt").read_text().splitlines()[1:]
    assert len(val) == round(len(masks) * 0.2)
    for folder in ("eval", "eval_again"):
        with open(tmp_path / "run" / folder / "results.jsonl") as f:
            record = json.loads(f.readlines()[-1])
        assert record["global_step"] == 4 and record["num_examples"] == len(val)
    with open(tmp_path / "ds" / "report.json") as f:
        assert json.load(f)["training"]["steps_per_s"] > 0


def test_a_failure_after_the_records_leaves_the_previous_dataset(tmp_path, monkeypatch):
    """Everything, the speed measurement included, happens in the staging folder: a failure (or
    Ctrl-C) there leaves the last good dataset, its report, and nothing else."""
    sample_folders.classification_folder(tmp_path / "folder", per_class=2)
    _build(tmp_path, image_dir=str(tmp_path / "folder"))
    before = _fingerprint(tmp_path / "ds")

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(build_dataset, "measure", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _build(tmp_path, image_dir=str(tmp_path / "folder"), measure_steps=3, num_shards=2)
    assert _fingerprint(tmp_path / "ds") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "folder", "mine.gin"]
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(tmp_path / "ds").st_mode & 0o777 == 0o777 & ~umask  # Not mkdtemp's owner-only mode.


@pytest.mark.parametrize(
    "layout, message",
    [
        ("split_and_test", "folders test, train, val look like splits"),
        ("one_class", "one class (circle); classification needs two class folders or more"),
        ("same_stem", "would share the mask img000.png"),
        ("csv_inside_output", "holds the input"),
        ("duplicate_names", "--class_names names a class twice"),
        ("misspelt_name", "--class_names: no folder {folder}/sqaure (the class folders: circle, square, triangle)"),
        ("html_mask", "{folder}/masks/img001.png: cannot read mask: not an image PIL reads"),
    ],
)
def test_layouts_that_would_mix_or_not_train_are_refused_before_anything_is_written(tmp_path, layout, message):
    folder = tmp_path / "folder"
    kwargs = {"image_dir": str(folder)}
    if layout == "split_and_test":
        for split in ("train", "val", "test"):
            sample_folders.classification_folder(folder / split, per_class=1)
    elif layout == "one_class":
        sample_folders.classification_folder(tmp_path / "all", per_class=2)
        os.makedirs(folder)
        os.replace(tmp_path / "all" / "circle", folder / "circle")
    elif layout == "same_stem":
        sample_folders.segmentation_folder(folder, count=2)
        Image.new("RGB", (53, 37)).save(folder / "images" / "img000.png")
        kwargs = {"image_dir": str(folder / "images"), "mask_dir": str(folder / "masks")}
    elif layout == "csv_inside_output":
        sample_folders.regression_folder(folder, count=4)
        (tmp_path / "ds").mkdir()
        os.replace(folder / "targets.csv", tmp_path / "ds" / "targets.csv")
        kwargs = {"image_dir": str(folder / "images"), "targets": str(tmp_path / "ds" / "targets.csv")}
    elif layout == "html_mask":  # A page saved from the browser under the mask's name.
        sample_folders.segmentation_folder(folder, count=3)
        (folder / "masks" / "img001.png").write_text("<!DOCTYPE html><html></html>")
        kwargs = {"image_dir": str(folder / "images"), "mask_dir": str(folder / "masks")}
    else:
        sample_folders.classification_folder(folder, per_class=2)
        names = {"duplicate_names": "circle,square,triangle,circle", "misspelt_name": "circle,sqaure,square,triangle"}
        kwargs["class_names"] = names[layout].split(",")
    with pytest.raises(DataError, match=re.escape(message.format(folder=folder))):
        _build(tmp_path, **kwargs)
    assert not (tmp_path / "ds").exists() or layout == "csv_inside_output"
    assert not (tmp_path / "mine.gin").exists()


def test_a_config_path_under_a_file_is_refused_before_anything_is_written(tmp_path):
    sample_folders.classification_folder(tmp_path / "folder", per_class=2)
    (tmp_path / "README.md").write_text("a file")
    readme = tmp_path / "README.md"
    with pytest.raises(DataError, match=re.escape(f"--config {readme}/x.gin: {readme} is a file")):
        build_dataset.build("mine", image_dir=str(tmp_path / "folder"), output_dir=str(tmp_path / "ds"),
                            config=str(tmp_path / "README.md" / "x.gin"), measure_steps=0)  # fmt: skip
    assert not (tmp_path / "ds").exists()


def test_an_output_path_that_is_a_link_or_a_pattern_is_refused(tmp_path):
    sample_folders.classification_folder(tmp_path / "folder", per_class=2)
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    for output, message in ((tmp_path / "link", "is a symbolic link"), (tmp_path / "run [2]", "no *, ? or [")):
        with pytest.raises(DataError, match=re.escape(message)):
            build_dataset.build("x", image_dir=str(tmp_path / "folder"), output_dir=str(output),
                                config=str(tmp_path / "x.gin"), measure_steps=0)  # fmt: skip


def test_a_phone_jpeg_read_as_mpo_is_turned_too(tmp_path):
    """Phones write JPEGs with a multi-picture block, which PIL opens as MPO: their EXIF turn counts."""
    shown = np.zeros((60, 40, 3), np.uint8)
    shown[:10] = 255  # A white band at the top of the shown image.
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = Image.fromarray(np.ascontiguousarray(sample_folders.STORED[6](shown)))
    stored.save(tmp_path / "phone.jpg", format="MPO", save_all=True, append_images=[stored], exif=exif, quality=95)
    assert Image.open(tmp_path / "phone.jpg").format == "MPO"
    pixels = images.read_image_file(str(tmp_path / "phone.jpg"))
    assert pixels.shape == (60, 40, 3) and pixels[:10].mean() > 200 and pixels[20:].mean() < 50


def test_a_csv_and_a_colour_table_saved_by_excel_read_as_text(tmp_path):
    """Excel's "CSV UTF-8" starts with a byte-order mark; a mask error names the file once."""
    sample_folders.regression_folder(tmp_path / "folder", count=4)
    table = tmp_path / "folder" / "targets.csv"
    table.write_bytes(b"\xef\xbb\xbf" + table.read_bytes().split(b"\n", 1)[1])  # No header: the BOM meets a file name.
    items, names = sources.csv_targets(str(tmp_path / "folder" / "images"), str(table))
    assert len(items) == 4 and names == ["target_0"]
    colours = tmp_path / "colours.csv"
    colours.write_bytes("\ufeffsky,0,0,255\nroad,128,64,128\n".encode())
    assert images.ColourTable.read(str(colours)).names == ["sky", "road"]
    colours.write_bytes("carr\xe9,0,255,0\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"colours.csv: the colour table is not UTF-8 text"):
        images.ColourTable.read(str(colours))
    Image.new("L", (5, 5)).save(tmp_path / "mask.png")
    with pytest.raises(DataError) as error:
        images.read_mask(str(tmp_path / "mask.png"), (4, 5))
    assert str(error.value).count("mask.png") == 1, error.value
