"""Turns a folder of images and same-named PNG masks into TFRecord shards.

    python tools/build_tfrecords.py --image_dir=I --mask_dir=M --output_prefix=P --num_shards=K

Masks are single-channel PNGs (grey or palette, as PASCAL VOC's) whose pixel value
is the class id; 255 marks pixels to ignore. Images keep their PNG or JPEG bytes;
other formats are re-encoded as PNG. Examples are written in file-name order, so an
example's index in the split is its position in that order.
"""

import io
import os

from absl import flags

from core import cli, runtime
from core.errors import DataError

flags.DEFINE_string("image_dir", None, "Folder of images (.png, .jpg, .jpeg, .bmp, .tif).")
flags.DEFINE_string("mask_dir", None, "Folder of PNG masks named like the images (stem.png).")
flags.DEFINE_string("output_prefix", None, "Shard path prefix, e.g. datasets/mine/train.")
flags.DEFINE_integer("num_shards", 1, "Number of shards.")
flags.DEFINE_list("class_names", None, "Optional class names, for the pixel-count summary.")
FLAGS = flags.FLAGS

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class DatasetError(DataError):
    """Bad input, with a message naming the file at fault."""


def find_pairs(image_dir: str, mask_dir: str) -> list:
    """`[(image_path, mask_path)]` in image file-name order.

    Raises:
      DatasetError: no images, or an image without its mask (naming it).
    """
    if not os.path.isdir(image_dir):
        raise DatasetError(f"image_dir {image_dir!r} is not a folder")
    if not os.path.isdir(mask_dir):
        raise DatasetError(f"mask_dir {mask_dir!r} is not a folder")
    names = sorted(name for name in os.listdir(image_dir) if name.lower().endswith(IMAGE_EXTENSIONS))
    if not names:
        raise DatasetError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {image_dir!r}")
    pairs = []
    for name in names:
        mask_path = os.path.join(mask_dir, os.path.splitext(name)[0] + ".png")
        if not os.path.exists(mask_path):
            raise DatasetError(f"{os.path.join(image_dir, name)}: no mask {mask_path}")
        pairs.append((os.path.join(image_dir, name), mask_path))
    return pairs


def load_pair(image_path: str, mask_path: str):
    """Reads one pair: `(image bytes or array, mask array, image_format)`.

    Raises:
      DatasetError: unreadable file, multi-channel mask, or sizes that differ.
    """
    import numpy as np
    from PIL import Image

    try:
        with open(image_path, "rb") as f:
            image_bytes = f.read()
        with Image.open(io.BytesIO(image_bytes)) as image:
            image_format = (image.format or "").lower()
            image_size = image.size
            if image_format not in ("png", "jpeg"):
                image_bytes = np.asarray(image.convert("RGB"))
    except OSError as error:
        raise DatasetError(f"{image_path}: cannot read image: {error}") from None
    try:
        with Image.open(mask_path) as mask_image:
            if mask_image.mode not in ("L", "P"):
                raise DatasetError(
                    f"{mask_path}: mask mode {mask_image.mode}; masks must be single-channel PNG "
                    "(grey or palette) whose pixel value is the class id"
                )
            mask = np.asarray(mask_image, dtype=np.uint8)
    except OSError as error:
        raise DatasetError(f"{mask_path}: cannot read mask: {error}") from None
    if mask.shape[::-1] != tuple(image_size):
        raise DatasetError(
            f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} but its image {image_path} is "
            f"{image_size[0]}x{image_size[1]} (width x height)"
        )
    return image_bytes, mask, image_format


def _example(image_path, mask_path):
    image, mask, image_format = load_pair(image_path, mask_path)
    return {
        "image": image,
        "mask": mask,
        "filename": os.path.basename(image_path),
        "image_format": image_format or "png",
    }


def build(image_dir, mask_dir, output_prefix, num_shards, class_names=None):
    """Writes the shards; returns the writer's stats (paths, count, pixel counts)."""
    from data import writer

    pairs = find_pairs(image_dir, mask_dir)
    examples = (_example(image_path, mask_path) for image_path, mask_path in pairs)
    stats = writer.write_shards(examples, len(pairs), output_prefix, num_shards)
    print(f"{len(pairs)} examples -> {num_shards} shard(s) {output_prefix}-*.tfrecord; pixels per class:")
    print(writer.format_pixel_counts(stats["pixel_counts"], class_names))
    return stats


def main(argv):
    del argv
    runtime.quiet()
    build(FLAGS.image_dir, FLAGS.mask_dir, FLAGS.output_prefix, FLAGS.num_shards, FLAGS.class_names)


if __name__ == "__main__":
    flags.mark_flags_as_required(["image_dir", "mask_dir", "output_prefix"])
    cli.run(main)
