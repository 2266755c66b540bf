"""Any image file a user has decodes to the same RGB pixels on every path.

Each file goes through tools/build_tfrecords.py into a record, the training
pipeline decodes the record, and tools/predict.py reads the original file: the
three agree, and for lossless formats they equal an independent numpy reading
(grey replicated, alpha dropped, palette looked up, 16 bits -> 8 by the high byte).
Masks that cannot be class ids (colour, wrong size, a colour palette in a record)
stop with one line naming the file.
"""

import io
import struct

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from common.errors import DataError, describe
from common.palette import voc_colour_map
from data import images, schema, writer
from data.input import make_input_fn
from data.sources import Item
from models.segmentation import Segmentation

HEIGHT, WIDTH = 8, 12
TASK = Segmentation(4)
RNG = np.random.default_rng(9)
RGB = RNG.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
GREY = RNG.integers(0, 256, (HEIGHT, WIDTH), dtype=np.uint8)
ALPHA = RNG.integers(0, 256, (HEIGHT, WIDTH), dtype=np.uint8)
INDICES = RNG.integers(0, 16, (HEIGHT, WIDTH), dtype=np.uint8)
PALETTE = RNG.integers(0, 256, (256, 3), dtype=np.uint8)
RGB16 = RNG.integers(0, 65536, (HEIGHT, WIDTH, 4), dtype=np.uint16)
GREY16 = RGB16[:, :, 3]
MASK = (np.arange(HEIGHT * WIDTH).reshape(HEIGHT, WIDTH) % 4).astype(np.uint8)


def _grey(values):
    return np.repeat(values[:, :, None], 3, axis=-1)


def _palette_image():
    image = Image.fromarray(INDICES, mode="P")
    image.putpalette(PALETTE.ravel().tolist())
    return image


def _tiff_rgb16(array):
    """An uncompressed little-endian 16-bit RGB TIFF (PIL cannot write one)."""
    data = array.astype("<u2").tobytes()
    bits_at = 8 + 2 + 12 * 10 + 4  # After the header and the one directory of 10 entries.
    # (tag, type: 3 short or 4 long, count, value or offset)
    entries = [(256, 3, 1, WIDTH), (257, 3, 1, HEIGHT), (258, 3, 3, bits_at), (259, 3, 1, 1), (262, 3, 1, 2)]
    entries += [(273, 4, 1, bits_at + 6), (277, 3, 1, 3), (278, 3, 1, HEIGHT), (279, 4, 1, len(data)), (284, 3, 1, 1)]
    directory = b"".join(  # A one-short value sits left-aligned in its 4-byte slot.
        struct.pack("<HHI", tag, kind, count)
        + (struct.pack("<HH", value, 0) if (kind, count) == (3, 1) else struct.pack("<I", value))
        for tag, kind, count, value in entries
    )
    return b"II*\0" + struct.pack("<IH", 8, len(entries)) + directory + struct.pack("<I3H", 0, 16, 16, 16) + data


def _save(image, fmt):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


# name -> (file bytes, the pixels every path must give; None for JPEG, whose pixels are TensorFlow's).
FILES = {
    "jpeg.jpg": (lambda: _save(Image.fromarray(RGB), "JPEG"), None),
    "png_grey.png": (lambda: _save(Image.fromarray(GREY), "PNG"), _grey(GREY)),
    "png_grey_alpha.png": (lambda: _save(Image.fromarray(np.dstack([GREY, ALPHA]), "LA"), "PNG"), _grey(GREY)),
    "png_rgb.png": (lambda: _save(Image.fromarray(RGB), "PNG"), RGB),
    "png_rgba.png": (lambda: _save(Image.fromarray(np.dstack([RGB, ALPHA]), "RGBA"), "PNG"), RGB),
    "png_palette.png": (lambda: _save(_palette_image(), "PNG"), PALETTE[INDICES]),
    "png_grey16.png": (lambda: _save(Image.fromarray(GREY16, "I;16"), "PNG"), _grey((GREY16 >> 8).astype(np.uint8))),
    "png_rgb16.png": (lambda: tf.io.encode_png(RGB16[:, :, :3]).numpy(), (RGB16[:, :, :3] >> 8).astype(np.uint8)),
    "png_rgba16.png": (lambda: tf.io.encode_png(RGB16).numpy(), (RGB16[:, :, :3] >> 8).astype(np.uint8)),
    "bmp_rgb.bmp": (lambda: _save(Image.fromarray(RGB), "BMP"), RGB),
    "bmp_rgba.bmp": (lambda: _save(Image.fromarray(np.dstack([RGB, ALPHA]), "RGBA"), "BMP"), RGB),
    "bmp_palette.bmp": (lambda: _save(_palette_image(), "BMP"), PALETTE[INDICES]),
    "bmp_bilevel.bmp": (lambda: _save(Image.fromarray(GREY > 127), "BMP"), _grey(np.where(GREY > 127, 255, 0))),
    "tif_rgb.tif": (lambda: _save(Image.fromarray(RGB), "TIFF"), RGB),
    "tif_rgba.tif": (lambda: _save(Image.fromarray(np.dstack([RGB, ALPHA]), "RGBA"), "TIFF"), RGB),
    "tif_palette.tif": (lambda: _save(_palette_image(), "TIFF"), PALETTE[INDICES]),
    "tif_grey16.tif": (lambda: _save(Image.fromarray(GREY16, "I;16"), "TIFF"), _grey((GREY16 >> 8).astype(np.uint8))),
    "tif_rgb16.tif": (lambda: _tiff_rgb16(RGB16[:, :, :3]), (RGB16[:, :, :3] >> 8).astype(np.uint8)),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Every file, its record built by tools/build_tfrecords.py, and the pipeline's pixels of each."""
    from tools.build_tfrecords import build

    root = tmp_path_factory.mktemp("formats")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    for name, (make, _) in FILES.items():
        (root / "images" / name).write_bytes(make())
        Image.fromarray(MASK).save(root / "masks" / (name.rsplit(".", 1)[0] + ".png"))
    stats = build(str(root / "images"), str(root / "masks"), str(root / "records" / "all"), 1)
    names = sorted(FILES)  # Written in file-name order.
    input_fn = make_input_fn(stats["paths"], len(names), HEIGHT, WIDTH, TASK)
    ((features, masks),) = list(input_fn())
    assert features["index"].numpy().tolist() == list(range(len(names)))
    np.testing.assert_array_equal(masks.numpy(), np.stack([MASK] * len(names)))
    records = [tf.train.Example.FromString(r) for r in tf.compat.v1.io.tf_record_iterator(stats["paths"][0])]
    return root, dict(zip(names, features["image"].numpy())), dict(zip(names, records))


@pytest.mark.parametrize("name", sorted(name for name in FILES if FILES[name][1] is not None))
def test_a_lossless_file_gives_the_same_pixels_in_training_and_predict(built, name):
    from tools.predict import load_image

    root, pipeline, records = built
    expected = FILES[name][1].astype(np.uint8)
    np.testing.assert_array_equal(pipeline[name], expected)
    np.testing.assert_array_equal(load_image(str(root / "images" / name), HEIGHT, WIDTH), expected)
    feature = records[name].features.feature
    assert feature[schema.IMAGE_FORMAT].bytes_list.value[0] == b"png"  # Records hold JPEG or PNG only.
    if name == "png_rgb.png":  # An 8-bit RGB PNG keeps its bytes.
        assert feature[schema.IMAGE_ENCODED].bytes_list.value[0] == (root / "images" / name).read_bytes()


def test_a_jpeg_keeps_its_bytes_and_tensorflow_decodes_it_everywhere(built):
    from tools.predict import load_image

    root, pipeline, records = built
    path = root / "images" / "jpeg.jpg"
    feature = records["jpeg.jpg"].features.feature
    assert feature[schema.IMAGE_FORMAT].bytes_list.value[0] == b"jpeg"
    assert feature[schema.IMAGE_ENCODED].bytes_list.value[0] == path.read_bytes()
    np.testing.assert_array_equal(load_image(str(path), HEIGHT, WIDTH), pipeline["jpeg.jpg"])
    with Image.open(path) as decoded:
        assert not np.array_equal(np.asarray(decoded.convert("RGB")), pipeline["jpeg.jpg"])  # PIL's would not do.


def test_sixteen_bits_are_scaled_not_clipped(built):
    _, pipeline, _ = built
    for name in ("png_grey16.png", "tif_grey16.tif"):
        assert len(np.unique(pipeline[name])) > 16 and pipeline[name].max() < 255  # PIL's convert gives all 255.


def test_an_undecodable_image_is_one_line_naming_the_file(tmp_path):
    from tools.predict import load_image

    Image.fromarray(MASK).save(tmp_path / "mask.png")
    for name, data in (("broken.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 40), ("notes.tif", b"not an image at all")):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DataError, match=rf"^\S*{name}: cannot (read|decode) image: [^\n]+$"):
            Item(str(tmp_path / name), mask=str(tmp_path / "mask.png")).read(name)
        with pytest.raises(DataError, match=rf"^\S*{name}: cannot (read|decode) image: [^\n]+$"):
            load_image(str(tmp_path / name), HEIGHT, WIDTH)
    (tmp_path / "float.tif").write_bytes(_save(Image.fromarray(GREY.astype(np.float32)), "TIFF"))
    with pytest.raises(DataError, match="float.tif: floating-point samples"):
        images.read_image_file(str(tmp_path / "float.tif"))


@pytest.mark.parametrize(
    "mask, message",
    [
        (Image.fromarray(np.dstack([MASK] * 3)), "mask mode RGB; masks must be single-channel"),
        (Image.fromarray(np.dstack([MASK, MASK]), "LA"), "mask mode LA; masks must be single-channel"),
        (Image.fromarray(MASK[:, 1:]), "mask is 11x8 but its image"),
    ],
    ids=["colour", "grey_alpha", "size"],
)
def test_build_tfrecords_names_a_mask_that_cannot_be_class_ids(tmp_path, mask, message):
    (tmp_path / "photo.bmp").write_bytes(_save(Image.fromarray(RGB), "BMP"))
    mask.save(tmp_path / "photo.png")
    with pytest.raises(DataError) as error:
        Item(str(tmp_path / "photo.bmp"), mask=str(tmp_path / "photo.png")).read("photo.bmp")
    line = str(error.value)
    assert message in line and "photo.png" in line and len(line.splitlines()) == 1, line


def _voc_palette_png(ids):
    image = Image.fromarray(ids, mode="P")
    image.putpalette(voc_colour_map(256).ravel().tolist())
    return _save(image, "PNG")


def _read_masks(tmp_path, mask_bytes):
    """The pipeline's masks of one record holding `mask_bytes` as-is (as DeepLab's converters store them)."""
    example = {"image": RGB, "filename": "2007_000032.jpg", "mask": mask_bytes}
    stats = writer.write_shards([example], 1, str(tmp_path / "deeplab"), 1, progress=False)
    return [labels.numpy()[0] for _, labels in make_input_fn(stats["paths"], 1, HEIGHT, WIDTH, TASK)()]


def test_a_colour_palette_mask_in_a_record_is_named_as_such(tmp_path):
    ids = np.where(MASK == 3, 255, MASK).astype(np.uint8)  # VOC: class ids and the 255 border.
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        _read_masks(tmp_path, _voc_palette_png(ids))
    line = describe(error.value)
    assert line.startswith("mask is a colour-palette PNG") and "remove_gt_colormap.py" in line, line
    assert line.endswith("index 0 file 2007_000032.jpg") and "label outside" not in line, line


def test_a_grey_palette_mask_reads_as_its_indices_and_a_greyed_colour_mask_gets_a_hint(tmp_path):
    grey_palette = _save(Image.fromarray(MASK).convert("P"), "PNG")  # PIL's palette of greys: levels = ids.
    np.testing.assert_array_equal(_read_masks(tmp_path, grey_palette)[0], MASK)
    ids = np.where(MASK == 3, 255, MASK).astype(np.uint8)
    greyed = tf.io.decode_png(_voc_palette_png(ids), channels=1).numpy()[:, :, 0]  # A colour mask saved as grey.
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        _read_masks(tmp_path / "greyed", schema.encode_png(greyed))
    line = describe(error.value)
    assert line.startswith("label outside [0, 4) and not 255:") and "2007_000032.jpg" in line, line
    assert "grey level of a VOC palette colour" in line and len(line.splitlines()) == 1, line
