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

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".jfif", ".bmp", ".tif", ".tiff", ".gif", ".webp")
SPLITS = ("train", "val")
# Folder names that mean a split, not a class: a tree with any of them must be split as train/ and val/.
SPLIT_NAMES = ("train", "val", "valid", "validation", "test", "testing", "eval")


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


def subfolders(folder: str) -> list:
    """The subfolders of `folder`, in name order; hidden ones (`.ipynb_checkpoints`, ...) left out."""
    return sorted(n for n in os.listdir(folder) if not n.startswith(".") and os.path.isdir(os.path.join(folder, n)))


def presplit(folder: str) -> bool:
    """Whether `folder` is already split: its subfolders are exactly `train/` and `val/`.

    Raises:
      DataError: split-like subfolders other than those two (a `test/`, a `validation/`):
        they would be read as classes, or drawn into the training split.
    """
    return check_split_names(subfolders(folder), folder)


def check_split_names(names, where: str) -> bool:
    """True for exactly train and val; False for no split name; an error for any other mix."""
    splits = sorted(set(names) & set(SPLIT_NAMES))
    if not splits:
        return False
    if set(names) == set(SPLITS):
        return True
    raise DataError(
        f"{where}: folders {', '.join(splits)} look like splits; a split tree has exactly train/ and val/ "
        "(move the others, e.g. test/, out of it)"
    )


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
    stems = {}
    for name in names:
        stem = os.path.splitext(name)[0]
        if stem in stems:
            raise DataError(f"{os.path.join(image_dir, name)} and {stems[stem]} would share the mask {stem}.png")
        stems[stem] = os.path.join(image_dir, name)
    # A mask is stem.png, the extension in any case (stem.PNG, as some tools write it).
    pngs = {}
    for png in sorted(os.listdir(mask_dir)):
        if png.lower().endswith(".png"):
            pngs.setdefault(png[:-4], []).append(png)
    items = []
    for name in names:
        stem = os.path.splitext(name)[0]
        found = pngs.get(stem) or []
        if len(found) > 1:
            raise DataError(f"{os.path.join(image_dir, name)}: two masks, {' and '.join(found)} in {mask_dir}")
        mask = os.path.join(mask_dir, found[0] if found else stem + ".png")
        if not os.path.exists(mask):  # Where names ignore case (macOS, Windows), the file system finds it.
            raise DataError(f"{os.path.join(image_dir, name)}: no mask {mask}")
        items.append(Item(os.path.join(image_dir, name), mask=mask))
    return items


def masks_without_an_image(mask_dir: str, items) -> list:
    """The PNG files directly in `mask_dir` that no item uses (for a notice, as `left_out`)."""
    used = {os.path.normpath(item.mask) for item in items}
    return [os.path.join(mask_dir, name) for name in sorted(os.listdir(mask_dir))
            if name.lower().endswith(".png") and not name.startswith(".")
            and os.path.normpath(os.path.join(mask_dir, name)) not in used]  # fmt: skip


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
    if len(set(ids)) != len(ids):
        twice = next(name for name in ids if ids.count(name) > 1)
        raise DataError(f"{listing}: id {twice} is listed twice")
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


def class_folders(root: str, class_names=None, allow_missing: bool = False):
    """`([Item(image, class_id)], class names)`: one subfolder of `root` per class.

    Classes are the subfolders in name order (as Keras and torchvision number them)
    unless `class_names` gives them (then every subfolder must be one of them, and each
    of them a subfolder unless `allow_missing`: a val split may lack a class). Images
    are found at any depth inside a class folder.

    Raises:
      DataError: no class folders, an unknown or empty one, a class without one, naming it.
    """
    check_folder(root, "image_dir")
    folders = subfolders(root)
    check_split_names(folders, root)
    if not folders:
        raise DataError(f"{root}: no class folders (classification wants one subfolder per class)")
    names = list(class_names) if class_names else folders
    unknown = [folder for folder in folders if folder not in names]
    if unknown:
        raise DataError(f"{os.path.join(root, unknown[0])}: a folder that is not one of the classes {names}")
    missing = [name for name in names if name not in folders]
    if missing and not allow_missing:
        raise DataError(f"--class_names: no folder {os.path.join(root, missing[0])} (the class folders: "
                        f"{', '.join(folders)})")  # fmt: skip
    if len(names) < 2:
        raise DataError(f"{root}: one class ({names[0]}); classification needs two class folders or more")
    if len(set(names)) != len(names):
        raise DataError(f"--class_names names a class twice: {names}")
    items = []
    for folder in folders:
        found = _images_under(os.path.join(root, folder))
        if not found:
            raise DataError(f"{os.path.join(root, folder)}: a class folder without images")
        items += [Item(path, class_id=names.index(folder)) for path in found]
    return items, names


def csv_targets(image_dir: str, table: str):
    """`([Item(image, target)], target names)` from a CSV of `file,target[,target...]`.

    Files are relative to `image_dir` (or absolute). A first row whose targets are not
    numbers is the header, its columns after the first naming the targets, unless its first
    cell is an image's name (`.jpg`, ...): then it is a row, and a bad target there an error.

    Raises:
      DataError: a row that does not parse, a file missing or listed twice, or rows
        with different numbers of targets, naming the line.
    """
    check_folder(image_dir, "image_dir")
    try:
        with open(table, newline="", encoding="utf-8-sig") as f:  # -sig: Excel's "CSV UTF-8" starts with a BOM.
            rows = [(number, row) for number, row in enumerate(csv.reader(f), 1) if any(cell.strip() for cell in row)]
    except OSError as error:
        raise DataError(f"{table}: cannot read: {error.strerror or error}") from None
    except (csv.Error, UnicodeDecodeError) as error:
        raise DataError(f"{table}: not a CSV file: {error}") from None
    if not rows:
        raise DataError(f"{table}: empty")
    names = None
    if not is_image(rows[0][1][0].strip()) and not all(_is_number(cell) for cell in rows[0][1][1:]):
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


def left_out(image_dir: str, items):
    """`(images, other files)` under `image_dir` that no item uses, from one walk of it: the image
    files no item names, and the files that are not images this tool reads (`.heic`, `.avif`,
    `.txt`, ...), hidden ones left out, in the walk's name order (for notices: nothing is left out
    silently)."""
    used = {os.path.normpath(item.image) for item in items}
    images, others = [], []
    for path in _files_under(image_dir):
        (images if is_image(os.path.basename(path)) else others).append(path)
    return [path for path in images if os.path.normpath(path) not in used], others


def _images_under(folder: str) -> list:
    """Image files at any depth under `folder` (hidden folders and files left out), in name order."""
    return [path for path in _files_under(folder) if is_image(os.path.basename(path))]


def _files_under(folder: str) -> list:
    found = []
    for directory, folders, files in os.walk(folder):
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        found += [os.path.join(directory, name) for name in sorted(files) if not name.startswith(".")]
    return found


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
