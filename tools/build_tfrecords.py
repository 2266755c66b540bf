"""Turns one split (a folder of images and same-named PNG masks, or a VOC split) into TFRecord shards.

    python tools/build_tfrecords.py --image_dir=I --mask_dir=M --output_prefix=P --num_shards=K
    python tools/build_tfrecords.py --voc_root=VOCdevkit/VOC2012 --split=train --output_prefix=P

To go from a folder to a whole dataset (a validation split, a report and a gin file
that trains), for any task, use tools/build_dataset.py; this tool writes one split.

Masks are single-channel PNGs (grey or palette, as PASCAL VOC's) whose pixel value
is the class id, 255 marks pixels to ignore; or RGB masks with `--mask_colors=TABLE`
(`data.images.ColourTable`). Every image is decoded in full (a truncated or corrupt
file stops the tool, named) and turned upright by its EXIF orientation; a JPEG (and an
8-bit RGB PNG) already upright keeps its bytes, anything else is stored as the 8-bit
RGB PNG of the pixels `data.images.read_image_file` gives, the pixels tools/predict.py
gives for the same file (alpha is dropped, 16 bits become 8 by the high byte).
Examples are written in file-name order (a VOC split: in the split list's order), so
an example's index in the split is its position in that order. A rebuild under the
same prefix replaces the split whole, whatever the shard counts (`data/writer.py`).
"""

import os

from absl import flags

from common import runtime
from common.errors import DataError
from core import cli
from data import images, sources

FLAGS = flags.FLAGS


def build(
    image_dir,
    mask_dir,
    output_prefix,
    num_shards,
    class_names=None,
    voc_root=None,
    split="train",
    voc_mask_folder="SegmentationClass",
    mask_colors=None,
    unknown_colors="error",
    max_pixels=images.MAX_PIXELS,
):
    """Writes the shards from two folders or a VOC tree; returns the writer's stats."""
    from data import writer

    if bool(voc_root) == bool(image_dir or mask_dir):
        raise DataError("give either --voc_root (with --split) or both --image_dir and --mask_dir")
    if voc_root:
        items = sources.voc(voc_root, split, voc_mask_folder)
    else:
        if not (image_dir and mask_dir):
            raise DataError("--image_dir and --mask_dir go together")
        items = sources.segmentation(image_dir, mask_dir)
    colours = images.ColourTable.read(mask_colors) if mask_colors else None
    if colours and not class_names:
        class_names = colours.names
    unknown_to_ignore = _unknown_to_ignore(unknown_colors)
    examples = (item.read(os.path.basename(item.image), colours, unknown_to_ignore, max_pixels) for item in items)
    stats = writer.write_shards(examples, len(items), output_prefix, num_shards)
    print(f"{len(items)} examples -> {num_shards} shard(s) {output_prefix}-*.tfrecord; pixels per class:")
    print(writer.format_pixel_counts(stats["pixel_counts"], class_names))
    return stats


def _unknown_to_ignore(unknown_colors: str) -> bool:
    if unknown_colors not in ("error", "ignore"):
        raise DataError(f"--unknown_colors={unknown_colors!r}: give error or ignore")
    return unknown_colors == "ignore"


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
        FLAGS.mask_colors,
        FLAGS.unknown_colors,
        FLAGS.max_pixels,
    )


def define_image_flags():
    """The flags every converter shares: colour masks and the pixel limit."""
    flags.DEFINE_string(
        "mask_colors", None, "A colour table (CSV/text 'name,r,g,b' rows, or JSON {name: [r,g,b]}) for RGB masks."
    )
    flags.DEFINE_enum("unknown_colors", "error", ["error", "ignore"], "A mask colour not in --mask_colors.")
    flags.DEFINE_integer("max_pixels", images.MAX_PIXELS, "Refuse images (and masks) larger than this; 0: no limit.")


def define_flags():
    """The command line (defined here, not at import, so the functions import anywhere)."""
    flags.DEFINE_string("image_dir", None, "Folder of images (.png, .jpg, .jpeg, .bmp, .tif, .gif).")
    flags.DEFINE_string("mask_dir", None, "Folder of PNG masks named like the images (stem.png).")
    flags.DEFINE_string("voc_root", None, "Instead of --image_dir/--mask_dir: a PASCAL VOC-style tree (e.g. VOC2012/).")
    flags.DEFINE_string("split", "train", "With --voc_root: the split list ImageSets/Segmentation/<split>.txt.")
    flags.DEFINE_string(
        "voc_mask_folder", "SegmentationClass", "With --voc_root: the mask folder (or SegmentationClassRaw)."
    )
    flags.DEFINE_string("output_prefix", None, "Shard path prefix, e.g. datasets/mine/train.")
    flags.DEFINE_integer("num_shards", 1, "Number of shards.")
    flags.DEFINE_list("class_names", None, "Optional class names, for the pixel-count summary.")
    define_image_flags()
    flags.mark_flags_as_required(["output_prefix"])


if __name__ == "__main__":
    define_flags()
    cli.run(main)
