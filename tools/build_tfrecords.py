"""Turns a folder of images and same-named PNG masks into TFRecord shards.

    python tools/build_tfrecords.py --image_dir=I --mask_dir=M --output_prefix=P --num_shards=K
    python tools/build_tfrecords.py --voc_root=VOCdevkit/VOC2012 --split=train --output_prefix=P

Masks are single-channel PNGs (grey or palette, as PASCAL VOC's) whose pixel value
is the class id; 255 marks pixels to ignore. A JPEG (and an 8-bit RGB PNG) keeps its
bytes; any other image (grey, grey+alpha, RGBA, palette or 16-bit PNG, BMP, TIFF) is
stored as the 8-bit RGB PNG of the pixels `data.schema.read_image_file` gives, the
pixels tools/predict.py gives for the same file (alpha is dropped, 16 bits become 8 by
the high byte). Examples are written in file-name order (a VOC split: in the split
list's order), so an example's index in the split is its position in that order.
"""

import io
import os

from absl import flags

from common import runtime
from common.errors import DataError
from core import cli

FLAGS = flags.FLAGS

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def find_pairs(image_dir: str, mask_dir: str) -> list:
    """`[(image_path, mask_path)]` in image file-name order.

    Raises:
      DataError: no images, or an image without its mask (naming it).
    """
    if not os.path.isdir(image_dir):
        raise DataError(f"image_dir {image_dir!r} is not a folder")
    if not os.path.isdir(mask_dir):
        raise DataError(f"mask_dir {mask_dir!r} is not a folder")
    names = sorted(name for name in os.listdir(image_dir) if name.lower().endswith(IMAGE_EXTENSIONS))
    if not names:
        raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {image_dir!r}")
    pairs = []
    for name in names:
        mask_path = os.path.join(mask_dir, os.path.splitext(name)[0] + ".png")
        if not os.path.exists(mask_path):
            raise DataError(f"{os.path.join(image_dir, name)}: no mask {mask_path}")
        pairs.append((os.path.join(image_dir, name), mask_path))
    return pairs


def find_voc_pairs(voc_root: str, split: str, mask_folder: str = "SegmentationClass") -> list:
    """`[(image_path, mask_path)]` of a VOC-style split, in the split list's order.

    The tree is PASCAL VOC's: `JPEGImages/<id>.jpg`, `<mask_folder>/<id>.png` (VOC's
    palette PNGs, whose indices are the class ids, or DeepLab's SegmentationClassRaw)
    and `ImageSets/Segmentation/<split>.txt`, one id per line.

    Raises:
      DataError: no split list, an empty one, or an id without its image or mask.
    """
    listing = os.path.join(voc_root, "ImageSets", "Segmentation", f"{split}.txt")
    if not os.path.isfile(listing):
        raise DataError(f"no split list {listing} (is --voc_root a VOC tree such as VOCdevkit/VOC2012?)")
    with open(listing) as f:
        ids = [line.split()[0] for line in f if line.strip()]
    if not ids:
        raise DataError(f"{listing}: no ids")
    pairs = []
    for number, name in enumerate(ids, 1):
        images = [os.path.join(voc_root, "JPEGImages", name + ext) for ext in (".jpg", ".jpeg", ".png")]
        image_path = next((path for path in images if os.path.exists(path)), None)
        mask_path = os.path.join(voc_root, mask_folder, name + ".png")
        if image_path is None:
            raise DataError(f"{listing}: line {number}, id {name}: no image {images[0]}")
        if not os.path.exists(mask_path):
            raise DataError(f"{listing}: line {number}, id {name}: no mask {mask_path}")
        pairs.append((image_path, mask_path))
    return pairs


def load_pair(image_path: str, mask_path: str):
    """Reads one pair: `(image bytes or array, mask array, image_format)`.

    One decoder everywhere: the training pipeline decodes the record with
    `schema.decode_image`, and tools/predict.py reads the file with
    `schema.read_image_file`; both give the same pixels. A JPEG keeps its bytes
    (TensorFlow decodes it at train, eval and predict time; re-encoding would lose
    quality, and decoding it with PIL would give other pixels); so does an 8-bit RGB
    PNG (TensorFlow decodes it as-is). Anything else is decoded here by
    `read_image_file` (grey replicated, alpha dropped, palette looked up, 16 bits ->
    8 by the high byte, TIFF and odd BMPs through PIL) and stored as a lossless PNG.

    Raises:
      DataError: unreadable file, multi-channel mask, or sizes that differ.
    """
    import numpy as np
    from PIL import Image

    from data import schema

    try:
        with open(image_path, "rb") as f:
            image = f.read()
    except OSError as error:
        raise DataError(f"{image_path}: cannot read image: {error.strerror or error}") from None
    image_format = schema.sniff_format(image)
    if image_format == "jpeg" or schema.is_rgb8_png(image):
        try:
            with Image.open(io.BytesIO(image)) as header:
                image_size = header.size
        except OSError as error:
            raise DataError(f"{image_path}: cannot read image: {error}") from None
    else:
        try:
            image = schema.decode_image_bytes(image, image_path)
        except DataError as error:
            raise DataError(str(error)) from None
        image_format = "png"
        image_size = (image.shape[1], image.shape[0])
    try:
        with Image.open(mask_path) as mask_image:
            if mask_image.mode not in ("L", "P"):
                raise DataError(
                    f"{mask_path}: mask mode {mask_image.mode}; masks must be single-channel PNG "
                    "(grey or palette) whose pixel value is the class id"
                )
            mask = np.asarray(mask_image, dtype=np.uint8)
    except OSError as error:
        raise DataError(f"{mask_path}: cannot read mask: {error}") from None
    if mask.shape[::-1] != tuple(image_size):
        raise DataError(
            f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} but its image {image_path} is "
            f"{image_size[0]}x{image_size[1]} (width x height)"
        )
    return image, mask, image_format


def _example(image_path, mask_path):
    image, mask, image_format = load_pair(image_path, mask_path)
    return {
        "image": image,
        "mask": mask,
        "filename": os.path.basename(image_path),
        "image_format": image_format or "png",
    }


def build(
    image_dir,
    mask_dir,
    output_prefix,
    num_shards,
    class_names=None,
    voc_root=None,
    split="train",
    voc_mask_folder="SegmentationClass",
):
    """Writes the shards from two folders or a VOC tree; returns the writer's stats."""
    from data import writer

    if bool(voc_root) == bool(image_dir or mask_dir):
        raise DataError("give either --voc_root (with --split) or both --image_dir and --mask_dir")
    if voc_root:
        pairs = find_voc_pairs(voc_root, split, voc_mask_folder)
    else:
        if not (image_dir and mask_dir):
            raise DataError("--image_dir and --mask_dir go together")
        pairs = find_pairs(image_dir, mask_dir)
    examples = (_example(image_path, mask_path) for image_path, mask_path in pairs)
    stats = writer.write_shards(examples, len(pairs), output_prefix, num_shards)
    print(f"{len(pairs)} examples -> {num_shards} shard(s) {output_prefix}-*.tfrecord; pixels per class:")
    print(writer.format_pixel_counts(stats["pixel_counts"], class_names))
    return stats


def main(argv):
    del argv
    runtime.quiet()
    build(
        FLAGS.image_dir,
        FLAGS.mask_dir,
        FLAGS.output_prefix,
        FLAGS.num_shards,
        FLAGS.class_names,
        FLAGS.voc_root,
        FLAGS.split,
        FLAGS.voc_mask_folder,
    )


def define_flags():
    """The command line (defined here, not at import, so the functions import anywhere)."""
    flags.DEFINE_string("image_dir", None, "Folder of images (.png, .jpg, .jpeg, .bmp, .tif).")
    flags.DEFINE_string("mask_dir", None, "Folder of PNG masks named like the images (stem.png).")
    flags.DEFINE_string("voc_root", None, "Instead of --image_dir/--mask_dir: a PASCAL VOC-style tree (e.g. VOC2012/).")
    flags.DEFINE_string("split", "train", "With --voc_root: the split list ImageSets/Segmentation/<split>.txt.")
    flags.DEFINE_string(
        "voc_mask_folder", "SegmentationClass", "With --voc_root: the mask folder (or SegmentationClassRaw)."
    )
    flags.DEFINE_string("output_prefix", None, "Shard path prefix, e.g. datasets/mine/train.")
    flags.DEFINE_integer("num_shards", 1, "Number of shards.")
    flags.DEFINE_list("class_names", None, "Optional class names, for the pixel-count summary.")
    flags.mark_flags_as_required(["output_prefix"])


if __name__ == "__main__":
    define_flags()
    cli.run(main)
