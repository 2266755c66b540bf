"""Sample folders laid out as people keep their data, to try tools/build_dataset.py on
(docs/data.md) and to test it: real image files, JPEG and PNG of many sizes, some JPEGs
with an EXIF orientation tag (the pixels stored turned, as a phone stores a photo, and
the mask drawn on the photo as it is shown). The pictures are the synthetic shapes.

    python -m data.sample_folders my      # my/segmentation, my/colour_masks, my/classes, my/coverage

Each writer returns what the converter must find, so a test can check it independently.
"""

import csv
import os
import pathlib
import sys

import numpy as np
from PIL import Image

from data import synthetic

# (height, width) as shown; odd sizes, portrait and landscape, never a multiple of 8.
SIZES = [(37, 53), (61, 45), (50, 50), (71, 66), (44, 90), (58, 39), (49, 77), (66, 58)]
# EXIF orientation -> the stored pixels of a shown image (the inverse of the viewer's turn:
# with 6 a viewer turns the stored pixels 90 degrees clockwise, so they are stored turned back).
STORED = {3: lambda p: np.rot90(p, 2), 6: lambda p: np.rot90(p, 1), 8: lambda p: np.rot90(p, -1)}


def save_photo(path, shown: np.ndarray, index: int, orientation: int = 1):
    """Saves `shown` (RGB uint8) as a JPEG (even index) or PNG (odd), stored turned with an EXIF
    orientation when `orientation` is 3, 6 or 8 (JPEG only)."""
    if orientation != 1:
        exif = Image.Exif()
        exif[0x0112] = orientation
        Image.fromarray(np.ascontiguousarray(STORED[orientation](shown))).save(path, quality=95, exif=exif)
    elif index % 2 == 0:
        Image.fromarray(shown).save(path, quality=95)
    else:
        Image.fromarray(shown).save(path)


def _name(index: int, orientation: int) -> str:
    return f"img{index:03d}.{'png' if index % 2 and orientation == 1 else 'jpg'}"


def _orientation(index: int) -> int:
    return {1: 6, 2: 6, 4: 8, 6: 3}.get(index % 8, 1)  # Index 2 is square: a turn keeps its size.


def segmentation_folder(root, count=24, seed=0):
    """`root/images/*.{jpg,png}` and `root/masks/*.png` (class ids); returns `{name: shown mask}`."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    masks = {}
    for i in range(count):
        height, width = SIZES[i % len(SIZES)]
        image, mask = synthetic.make_example(seed, "train", i, height, width)
        orientation = _orientation(i)
        name = _name(i, orientation)
        save_photo(root / "images" / name, image, i, orientation)
        Image.fromarray(mask).save(root / "masks" / (name.rsplit(".", 1)[0] + ".png"))
        masks[name] = mask
    return masks


def colour_folder(root, count=12, seed=0):
    """Like `segmentation_folder` but with RGB masks, and a colour table `root/colours.csv`."""
    palette = {0: (0, 0, 0), 1: (255, 0, 0), 2: (0, 255, 0), 3: (0, 0, 255), 255: (255, 255, 255)}
    masks = segmentation_folder(root, count, seed)
    for name, mask in masks.items():
        rgb = np.zeros(mask.shape + (3,), np.uint8)
        for value, colour in palette.items():
            rgb[mask == value] = colour
        Image.fromarray(rgb).save(root / "masks" / (name.rsplit(".", 1)[0] + ".png"))
    (root / "colours.csv").write_text(
        "name,r,g,b\nbackground,0,0,0\ncircle,255,0,0\nsquare,0,255,0\ntriangle,0,0,255\nignore,255,255,255\n"
    )
    return masks


def classification_folder(root, per_class=8, seed=0):
    """`root/<circle|square|triangle>/*.{jpg,png}`; returns `{relative path: class id}`."""
    names = synthetic.label_names("classification")
    labels, made = {}, {name: 0 for name in names}
    i = 0
    while min(made.values()) < per_class:
        height, width = SIZES[i % len(SIZES)]
        image, label = synthetic.make_classification_example(seed, "train", i, height, width)
        name = names[label]
        if made[name] < per_class:
            (root / name).mkdir(parents=True, exist_ok=True)
            file_name = _name(i, _orientation(i))
            save_photo(root / name / file_name, image, i, _orientation(i))
            labels[f"{name}/{file_name}"] = label
            made[name] += 1
        i += 1
    return labels


def regression_folder(root, count=20, seed=0):
    """`root/images/*` and `root/targets.csv` (`file,coverage`, a header); returns `{file: target}`."""
    (root / "images").mkdir(parents=True)
    targets = {}
    for i in range(count):
        height, width = SIZES[i % len(SIZES)]
        image, target = synthetic.make_regression_example(seed, "train", i, height, width)
        name = _name(i, _orientation(i))
        save_photo(root / "images" / name, image, i, _orientation(i))
        targets[name] = float(np.asarray(target).ravel()[0])
    with open(root / "targets.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "coverage"])
        writer.writerows([[name, f"{value:.6f}"] for name, value in targets.items()])
    return targets


def main(argv):
    """Writes the four sample folders under the folder given (default `my`)."""
    root = pathlib.Path(argv[1] if len(argv) > 1 else "my")
    for name, write, what in (
        ("segmentation", segmentation_folder, "images/ and masks/ (class ids)"),
        ("colour_masks", colour_folder, "images/, masks/ (RGB) and colours.csv"),
        ("classes", classification_folder, "one folder per class"),
        ("coverage", regression_folder, "images/ and targets.csv"),
    ):
        if os.path.exists(root / name):
            print(f"{root / name} exists; left as it is")
            continue
        write(root / name)
        print(f"{root / name}: {what}")


if __name__ == "__main__":
    main(sys.argv)
