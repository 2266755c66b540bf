"""Where a dataset's examples come from: folders as people keep them, read into one list.

Each finder returns `Item`s (an image file and its label: a mask file, a class id or
targets), in file-name order, and names the file at fault when something does not
pair up. The layouts are the common ones:

- segmentation: an image folder and a mask folder of same-named PNGs, or a PASCAL
  VOC tree (`voc`);
- classification: one subfolder per class (ImageNet's, Keras'
  `image_dataset_from_directory`'s and torchvision's `ImageFolder`'s layout);
- regression: an image folder and a CSV of `file,target[,target...]`.

A folder whose only subfolders are `train/` and `val/` is already split (`presplit`);
otherwise `split` draws a seeded validation split, stratified by class when there are
classes. tools/build_dataset.py puts these together.
"""

import csv
import dataclasses
import os

import numpy as np

from common.errors import DataError
from data import images

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif")
SPLITS = ("train", "val")


@dataclasses.dataclass(frozen=True)
class Item:
    """One example's sources: `image` (a path), and its `mask` path, `class_id` or `target`."""

    image: str
    mask: str = None
    class_id: int = None
    target: tuple = None

    def read(self, name: str, colours=None, unknown_to_ignore=False, max_pixels=images.MAX_PIXELS) -> dict:
        """The example `data.writer.write_shards` takes, its image decoded in full and checked.

        Args:
          name: the file name the record keeps (errors, panels and per-example results show it).
          colours: a `images.ColourTable` for RGB masks, or None.
          unknown_to_ignore: a mask colour not in `colours` becomes the ignore label.
          max_pixels: the pixel limit of images and masks (0: none).

        Raises:
          DataError: the image or mask at fault, named (see `images.image_for_record`, `images.read_mask`).
        """
        image, image_format, size = images.image_for_record(self.image, max_pixels)
        example = {"image": image, "image_format": image_format, "filename": name}
        if self.mask is not None:
            example["mask"] = images.read_mask(self.mask, size, colours, unknown_to_ignore, max_pixels)
        elif self.class_id is not None:
            example["class_label"] = self.class_id
        else:
            example["target"] = list(self.target)
        return example


def is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def check_folder(path: str, what: str):
    if not path or not os.path.isdir(path):
        raise DataError(f"{what} {path!r} is not a folder")


def _images_in(folder: str) -> list:
    """Image file names directly in `folder`, sorted."""
    return sorted(name for name in os.listdir(folder) if is_image(name) and os.path.isfile(os.path.join(folder, name)))


def presplit(folder: str) -> bool:
    """Whether `folder` is already split: its subfolders are exactly `train/` and `val/`."""
    subfolders = {name for name in os.listdir(folder) if os.path.isdir(os.path.join(folder, name))}
    return subfolders == set(SPLITS)


def segmentation(image_dir: str, mask_dir: str) -> list:
    """`[Item(image, mask)]` in image file-name order: each image's mask is `<mask_dir>/<stem>.png`.

    Raises:
      DataError: not folders, no images, or an image without its mask (naming it).
    """
    check_folder(image_dir, "image_dir")
    check_folder(mask_dir, "mask_dir")
    names = _images_in(image_dir)
    if not names:
        raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {image_dir!r}")
    items = []
    for name in names:
        mask = os.path.join(mask_dir, os.path.splitext(name)[0] + ".png")
        if not os.path.exists(mask):
            raise DataError(f"{os.path.join(image_dir, name)}: no mask {mask}")
        items.append(Item(os.path.join(image_dir, name), mask=mask))
    return items


def voc(voc_root: str, split: str, mask_folder: str = "SegmentationClass") -> list:
    """`[Item(image, mask)]` of a VOC-style split, in the split list's order.

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
    items = []
    for number, name in enumerate(ids, 1):
        images = [os.path.join(voc_root, "JPEGImages", name + ext) for ext in (".jpg", ".jpeg", ".png")]
        image = next((path for path in images if os.path.exists(path)), None)
        mask = os.path.join(voc_root, mask_folder, name + ".png")
        if image is None:
            raise DataError(f"{listing}: line {number}, id {name}: no image {images[0]}")
        if not os.path.exists(mask):
            raise DataError(f"{listing}: line {number}, id {name}: no mask {mask}")
        items.append(Item(image, mask=mask))
    return items


def class_folders(root: str, class_names=None):
    """`([Item(image, class_id)], class names)`: one subfolder of `root` per class.

    Classes are the subfolders in name order (as Keras and torchvision number them)
    unless `class_names` gives them (then every subfolder must be one of them). Images
    are found at any depth inside a class folder.

    Raises:
      DataError: no class folders, an unknown or empty one, naming it.
    """
    check_folder(root, "image_dir")
    folders = sorted(name for name in os.listdir(root) if os.path.isdir(os.path.join(root, name)))
    if not folders:
        raise DataError(f"{root}: no class folders (classification wants one subfolder per class)")
    names = list(class_names) if class_names else folders
    unknown = [folder for folder in folders if folder not in names]
    if unknown:
        raise DataError(f"{os.path.join(root, unknown[0])}: a folder that is not one of the classes {names}")
    items = []
    for folder in folders:
        found = []
        for directory, subfolders, files in os.walk(os.path.join(root, folder)):
            subfolders.sort()
            found += [os.path.join(directory, name) for name in sorted(files) if is_image(name)]
        if not found:
            raise DataError(f"{os.path.join(root, folder)}: a class folder without images")
        items += [Item(path, class_id=names.index(folder)) for path in found]
    return items, names


def csv_targets(image_dir: str, table: str):
    """`([Item(image, target)], target names)` from a CSV of `file,target[,target...]`.

    Files are relative to `image_dir` (or absolute). A first row whose targets are not
    numbers is the header: its columns after the first name the targets.

    Raises:
      DataError: a row that does not parse, a file missing or listed twice, or rows
        with different numbers of targets, naming the line.
    """
    check_folder(image_dir, "image_dir")
    try:
        with open(table, newline="") as f:
            rows = [(number, row) for number, row in enumerate(csv.reader(f), 1) if any(cell.strip() for cell in row)]
    except OSError as error:
        raise DataError(f"{table}: cannot read: {error.strerror or error}") from None
    except (csv.Error, UnicodeDecodeError) as error:
        raise DataError(f"{table}: not a CSV file: {error}") from None
    if not rows:
        raise DataError(f"{table}: empty")
    names = None
    if not all(_is_number(cell) for cell in rows[0][1][1:]):
        names, rows = [cell.strip() for cell in rows[0][1][1:]], rows[1:]
    items, seen = [], {}
    for number, row in rows:
        where = f"{table}: line {number}"
        if len(row) < 2:
            raise DataError(f"{where}: expected file,target[,target...], got {','.join(row)!r}")
        if not all(_is_number(cell) for cell in row[1:]):
            raise DataError(f"{where}: targets must be numbers, got {row[1:]}")
        target = tuple(float(cell) for cell in row[1:])
        if not all(np.isfinite(target)):
            raise DataError(f"{where}: targets must be finite, got {row[1:]}")
        width = len(names) if names else len(items[0].target) if items else len(target)
        if len(target) != width:
            raise DataError(f"{where}: {len(target)} target(s), the rows before it have {width}")
        path = os.path.normpath(os.path.join(image_dir, row[0].strip()))
        if path in seen:
            raise DataError(f"{where}: {row[0].strip()} is also on line {seen[path]}")
        if not os.path.isfile(path):
            raise DataError(f"{where}: no image {path}")
        seen[path] = number
        items.append(Item(path, target=target))
    if not items:
        raise DataError(f"{table}: a header and no rows")
    return sorted(items, key=lambda item: item.image), names or [f"target_{i}" for i in range(len(items[0].target))]


def unlisted_images(image_dir: str, items) -> list:
    """Image files under `image_dir` that no item uses (for a notice: nothing is left out silently)."""
    used = {os.path.normpath(item.image) for item in items}
    found = []
    for directory, subfolders, files in os.walk(image_dir):
        subfolders.sort()
        found += [os.path.join(directory, name) for name in sorted(files) if is_image(name)]
    return [path for path in found if os.path.normpath(path) not in used]


def split(items, val_fraction: float, seed: int, strata=None) -> dict:
    """`{"train": items, "val": items}`: a seeded draw of `val_fraction` of the items for validation.

    With `strata` (one key per item, e.g. its class), each stratum is split alone, so
    every class with at least two examples has one in each split. Each split keeps the
    items' order. The same items, fraction and seed give the same split.

    Raises:
      DataError: a fraction outside (0, 1), or one that leaves a split empty.
    """
    if not 0 < val_fraction < 1:
        raise DataError(f"--val_fraction={val_fraction} must be between 0 and 1")
    strata = np.zeros(len(items), np.int64) if strata is None else np.asarray(strata)
    rng = np.random.default_rng(seed)
    is_val = np.zeros(len(items), bool)
    for stratum in np.unique(strata):
        members = np.flatnonzero(strata == stratum)
        count = int(round(len(members) * val_fraction))
        if len(members) >= 2:
            count = min(max(count, 1), len(members) - 1)
        is_val[rng.permutation(members)[:count]] = True
    if is_val.all() or not is_val.any():
        raise DataError(
            f"--val_fraction={val_fraction} of {len(items)} examples leaves a split empty; give more examples "
            "or another fraction"
        )
    return {
        "train": [item for item, val in zip(items, is_val) if not val],
        "val": [item for item, val in zip(items, is_val) if val],
    }


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
