"""Learnable synthetic datasets: shapes on textured, noisy backgrounds, for three tasks.

- segmentation: 1-4 shapes; classes 0 background, 1 circle, 2 square, 3 triangle.
  As in PASCAL VOC, a thin band on every object boundary is labelled 255 (ignore).
- classification: exactly one shape, wholly inside the image; classes 0 circle,
  1 square, 2 triangle.
- regression: 1-4 shapes; the target `coverage` is the fraction of the image's
  pixels covered by any shape.

Squares and triangles are upright up to a small tilt, every colour is random (so
colour says nothing about the class), and the backgrounds mix a gradient, stripes
and noise.

Every example is a pure function of `(seed, task, split, index)`, so example 17 of
the val split is the same whatever the split size, and two runs write identical files.

The VOC-like dataset (`write_voc_tree`) draws the segmentation scenes at varying
sizes into a PASCAL VOC tree of JPEGs and PNG masks, for the converters to turn into
records as they would turn VOC itself: DeepLab's own (`third_party/deeplab/`) and
`tools/build_tfrecords.py`.

Usage:
  python -m data.synthetic [--task=segmentation] --output_dir=datasets/synthetic
  python -m data.synthetic --task=classification --output_dir=datasets/synthetic_classification
  python -m data.synthetic --voc_root=datasets/voc_like/VOCdevkit/VOC2012  # The VOC tree alone.
  python -m data.synthetic --for_config=configs/classification.gin  # What `make train` runs.
  python -m data.synthetic --for_config=configs/voc_like_deeplab.gin  # VOC tree + DeepLab's records.
"""

import json
import os
import shlex
import subprocess
import sys
from typing import NamedTuple

import numpy as np

from common import gin_text
from common.palette import voc_colour_map

TASKS = ("segmentation", "classification", "regression")
CLASS_NAMES = ("background", "circle", "square", "triangle")  # Segmentation: the mask values.
SHAPE_NAMES = ("circle", "square", "triangle")  # Classification: label k is shape kind k + 1.
TARGET_NAMES = ("coverage",)  # Regression.
SPLIT_IDS = {"train": 0, "val": 1}
# Appended to the random key of the new tasks; segmentation keeps its original
# `[seed, split, index]` key (and so its files). Never 0: numpy pads a short key
# with zeros, so `[s, p, i, 0]` would be segmentation's stream.
TASK_IDS = {"classification": 1, "regression": 2}
# How far a shape reaches from its centre, in radii (the triangle's circumradius is
# 1.4: its edges are 0.7 from the centre); classification keeps the shape inside.
_EXTENT = {1: 1.0, 2: 1.2, 3: 1.4}
DATASET_ROOT = os.path.join("datasets", "synthetic")  # Ours: datasets/synthetic*, relative to the repo.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The VOC-like dataset: the tree where DeepLab's download script leaves VOC (pascal_voc_seg/
# VOCdevkit/VOC2012), and beside it one folder of records per converter.
VOC_LIKE_ROOT = os.path.join("datasets", "voc_like")
VOC_TREE = os.path.join("VOCdevkit", "VOC2012")
VOC_CONVERTERS = ("deeplab", "template")  # DeepLab's build_voc2012_data.py, tools/build_tfrecords.py.
VOC_NUM_SHARDS = 4  # DeepLab's converter always writes 4; the template's is asked for as many: alike folders.
# Appended to an example's key for its image size (after the tasks' ids, never 0), so
# the size draw leaves the scene's own stream, and so its shapes, untouched.
VOC_SIZE_STREAM = 3


class Shape(NamedTuple):
    """One drawn shape: kind (1 circle, 2 square, 3 triangle), centre, radius and rotation (radians)."""

    kind: int
    cy: float
    cx: float
    radius: float
    angle: float


def _random_colour(rng, away_from=None, min_distance=150):
    """A random RGB colour at least `min_distance` (L1) away from `away_from`."""
    for _ in range(100):
        colour = rng.integers(0, 256, size=3)
        if away_from is None or np.abs(colour - away_from).sum() >= min_distance:
            return colour
    return 255 - np.asarray(away_from)


def _background(rng, height, width):
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    start, end = _random_colour(rng), _random_colour(rng, min_distance=0)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xx + np.sin(angle) * yy) / max(height, width)
    ramp = (ramp - ramp.min()) / max(np.ptp(ramp), 1e-6)
    image = start * (1 - ramp[..., None]) * 0.7 + end * ramp[..., None] * 0.3 + start * 0.3 * ramp[..., None]
    period, stripe_angle = rng.uniform(4, 16), rng.uniform(0, np.pi)
    stripes = np.sin(2 * np.pi * (np.cos(stripe_angle) * xx + np.sin(stripe_angle) * yy) / period)
    image += rng.uniform(5, 30) * stripes[..., None]
    return image


def _shape_mask(kind, yy, xx, cy, cx, radius, angle):
    dy, dx = yy - cy, xx - cx
    if kind == 1:  # circle
        return dy * dy + dx * dx <= radius * radius
    u = np.cos(angle) * dx + np.sin(angle) * dy
    v = -np.sin(angle) * dx + np.cos(angle) * dy
    if kind == 2:  # square
        half = radius * 0.85
        return (np.abs(u) <= half) & (np.abs(v) <= half)
    # Equilateral triangle: inside all three edges' half-planes.
    inside = np.ones_like(u, dtype=bool)
    for k in range(3):
        theta = angle + 2 * np.pi * k / 3
        inside &= np.cos(theta) * dx + np.sin(theta) * dy <= radius * 0.7
    return inside


def _draw_shape(rng, image, shapes, yy, xx, kind, radius, cy, cx) -> Shape:
    """Paints one shape of `kind` on `image` (float) and writes `kind` into `shapes` where it lies."""
    # A small tilt only: edge orientation stays a local cue (square: axis-aligned
    # edges, triangle: diagonal ones, circle: curved), so a small net learns fast.
    tilt = rng.uniform(-0.2, 0.2) + (np.pi / 2 if kind == 3 else 0.0)
    inside = _shape_mask(kind, yy, xx, cy, cx, radius, tilt)
    local_mean = image[inside].mean(axis=0) if inside.any() else None
    colour = _random_colour(rng, away_from=local_mean)
    image[inside] = colour + rng.normal(0, 8, size=(int(inside.sum()), 3))
    shapes[inside] = kind
    return Shape(kind, float(cy), float(cx), float(radius), float(tilt))


def render(task: str, seed: int, split: str, index: int, height: int = 64, width: int = 64):
    """Draws one example's scene.

    Returns:
      `(image uint8 [H, W, 3], shapes uint8 [H, W], drawn)`: `shapes` holds the kind
      (1 circle, 2 square, 3 triangle) of the shape on top at each pixel, 0 elsewhere,
      before any ignore band; `drawn` lists the `Shape`s in drawing order.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; one of {', '.join(TASKS)}")
    key = [seed, SPLIT_IDS[split], index] + ([TASK_IDS[task]] if task in TASK_IDS else [])
    rng = np.random.default_rng(key)
    image = _background(rng, height, width)
    shapes = np.zeros((height, width), np.uint8)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    short_side = min(height, width)
    drawn = []
    if task == "classification":
        kind = int(rng.integers(1, len(CLASS_NAMES)))
        radius = rng.uniform(0.1, 0.22) * short_side
        margin = _EXTENT[kind] * radius + 1  # The whole shape inside, so its outline tells its kind.
        cy = rng.uniform(min(margin, height / 2), max(height - margin, height / 2))
        cx = rng.uniform(min(margin, width / 2), max(width - margin, width / 2))
        drawn.append(_draw_shape(rng, image, shapes, yy, xx, kind, radius, cy, cx))
    else:
        for _ in range(rng.integers(1, 5)):
            kind = int(rng.integers(1, len(CLASS_NAMES)))
            radius = rng.uniform(0.1, 0.22) * short_side
            cy, cx = rng.uniform(0, height), rng.uniform(0, width)
            drawn.append(_draw_shape(rng, image, shapes, yy, xx, kind, radius, cy, cx))
    image += rng.normal(0, rng.uniform(4, 14), size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), shapes, drawn


def make_example(seed: int, split: str, index: int, height: int = 64, width: int = 64):
    """Segmentation: returns `(image uint8 [H,W,3], mask uint8 [H,W])` for one example."""
    image, mask, _ = render("segmentation", seed, split, index, height, width)
    # Ignore a one-pixel band on each side of every boundary, as VOC does.
    padded = np.pad(mask, 1, mode="edge")
    boundary = np.zeros_like(mask, dtype=bool)
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        boundary |= padded[dy : dy + height, dx : dx + width] != mask
    mask[boundary] = 255
    return image, mask


def make_classification_example(seed: int, split: str, index: int, height: int = 64, width: int = 64):
    """Classification: returns `(image uint8 [H,W,3], label)`, label 0 circle, 1 square, 2 triangle."""
    image, _, (shape,) = render("classification", seed, split, index, height, width)
    return image, shape.kind - 1


def make_regression_example(seed: int, split: str, index: int, height: int = 64, width: int = 64):
    """Regression: returns `(image uint8 [H,W,3], target float32 [1])`, the fraction covered by shapes."""
    image, shapes, _ = render("regression", seed, split, index, height, width)
    return image, np.array([np.count_nonzero(shapes) / shapes.size], np.float32)


def example(task: str, seed: int, split: str, index: int, height: int = 64, width: int = 64) -> dict:
    """One example as `data.writer.write_shards` takes it: image, filename and the task's label."""
    filename = f"{split}_{index:06d}.png"
    if task == "segmentation":
        image, mask = make_example(seed, split, index, height, width)
        return {"image": image, "filename": filename, "mask": mask}
    if task == "classification":
        image, label = make_classification_example(seed, split, index, height, width)
        return {"image": image, "filename": filename, "class_label": label}
    if task == "regression":
        image, target = make_regression_example(seed, split, index, height, width)
        return {"image": image, "filename": filename, "target": target}
    raise ValueError(f"unknown task {task!r}; one of {', '.join(TASKS)}")


def label_names(task: str) -> tuple:
    """The names of the classes (segmentation, classification) or targets (regression)."""
    return {"segmentation": CLASS_NAMES, "classification": SHAPE_NAMES, "regression": TARGET_NAMES}[task]


def write_dataset(
    output_dir, num_train=2000, num_val=400, height=64, width=64, seed=0, num_shards=4, task="segmentation"
):
    """Writes `train-*` and `val-*` shards and, last, `dataset.json` (the completion mark)."""
    from data import writer

    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; one of {', '.join(TASKS)}")
    names = label_names(task)
    names_key = "target_names" if task == "regression" else "class_names"
    summary = {"task": task, names_key: list(names), "height": height, "width": width, "seed": seed}
    for split, count in (("train", num_train), ("val", num_val)):
        examples = (example(task, seed, split, i, height, width) for i in range(count))
        stats = writer.write_shards(examples, count, os.path.join(output_dir, split), min(num_shards, count))
        if task == "segmentation":
            print(f"{split}: {count} examples, pixels per class:", file=sys.stderr)
            print(writer.format_pixel_counts(stats["pixel_counts"], names), file=sys.stderr)
        elif task == "classification":
            print(f"{split}: {count} examples per class:", file=sys.stderr)
            print(writer.format_label_counts(stats["label_counts"], names), file=sys.stderr)
        else:
            print(f"{split}: {count} examples, targets:", file=sys.stderr)
            print(writer.format_target_summary(stats["target_summary"], names), file=sys.stderr)
        summary[f"num_{split}"] = count
    with open(os.path.join(output_dir, "dataset.json"), "w") as f:
        json.dump(summary, f, indent=2)
    return summary


# The VOC-like dataset: real-image structure (JPEG, sizes varying, palette masks) on our scenes.


def voc_image_size(seed: int, split: str, index: int, min_size: int = 48, max_size: int = 112):
    """One VOC-like example's `(height, width)`: each uniform over the sizes in
    `[min_size, max_size]` that are not multiples of 8, drawn independently.

    Not multiples of 8, as most of VOC's are not: every image then needs the padding
    or resizing a network with output stride 8 must do, and a pipeline that silently
    assumes divisible sizes fails here rather than on a user's photos.
    """
    sizes = [size for size in range(min_size, max_size + 1) if size % 8]
    if not sizes:
        raise ValueError(f"no size in [{min_size}, {max_size}] that is not a multiple of 8")
    rng = np.random.default_rng([seed, SPLIT_IDS[split], index, VOC_SIZE_STREAM])
    height, width = rng.choice(sizes, size=2)
    return int(height), int(width)


def voc_example_id(split: str, index: int) -> str:
    """The id of example `index` of `split`: its file stem and its line in the split list."""
    return f"{split}_{index:06d}"


def write_voc_tree(voc_root, num_train=600, num_val=100, seed=0, min_size=48, max_size=112, quality=90):
    """Writes the segmentation scenes at varying sizes as a PASCAL VOC 2012 tree.

    The layout is what DeepLab's `download_and_convert_voc2012.sh` leaves behind, so
    the converters run on it exactly as on VOC:

      JPEGImages/<id>.jpg                 the images (JPEG, `quality`), `voc_image_size` each
      SegmentationClass/<id>.png          VOC's palette PNGs: pixel = class id, VOC's colours
      SegmentationClassRaw/<id>.png       the same ids as grey PNGs (DeepLab's remove_gt_colormap.py)
      ImageSets/Segmentation/{train,val}.txt  the ids of each split, one a line
      dataset.json                        written last: the completion mark

    Example `(split, index)` is `make_example(seed, split, index, *voc_image_size(...))`:
    the scene and its mask (classes 0-3, a 255 ignore band on every boundary, as VOC's),
    a pure function of its key like every synthetic example.

    Returns:
      The summary written to `dataset.json`.
    """
    from PIL import Image

    from data import writer

    palette = voc_colour_map(256).tobytes()
    folders = {
        name: os.path.join(voc_root, name) for name in ("JPEGImages", "SegmentationClass", "SegmentationClassRaw")
    }
    lists = os.path.join(voc_root, "ImageSets", "Segmentation")
    for folder in (*folders.values(), lists):
        os.makedirs(folder, exist_ok=True)
    summary = {"task": "segmentation", "class_names": list(CLASS_NAMES), "seed": seed, "sizes": [min_size, max_size]}
    for split, count in (("train", num_train), ("val", num_val)):
        ids, pixel_counts, sizes = [], np.zeros(256, np.int64), set()
        for index in range(count):
            name = voc_example_id(split, index)
            height, width = voc_image_size(seed, split, index, min_size, max_size)
            image, mask = make_example(seed, split, index, height, width)
            Image.fromarray(image).save(os.path.join(folders["JPEGImages"], name + ".jpg"), quality=quality)
            raw = Image.fromarray(mask)  # Mode L: what remove_gt_colormap.py writes.
            raw.save(os.path.join(folders["SegmentationClassRaw"], name + ".png"))
            raw.putpalette(palette)  # Mode P, the indices unchanged: VOC's own masks.
            raw.save(os.path.join(folders["SegmentationClass"], name + ".png"))
            ids.append(name)
            pixel_counts += np.bincount(mask.ravel(), minlength=256)
            sizes.add((height, width))
        # Every line ends in a newline: DeepLab's converter reads each line, an empty one too, as an id.
        with open(os.path.join(lists, f"{split}.txt"), "w") as f:
            f.writelines(name + "\n" for name in ids)
        print(f"{split}: {count} JPEG images in {len(sizes)} sizes, pixels per class:", file=sys.stderr)
        print(writer.format_pixel_counts(pixel_counts, CLASS_NAMES), file=sys.stderr)
        summary[f"num_{split}"] = count
    with open(os.path.join(voc_root, "dataset.json"), "w") as f:
        json.dump(summary, f, indent=2)
    return summary


def _count_lines(path: str) -> int:
    with open(path) as f:
        return sum(1 for line in f if line.strip())


def _short_path(path: str) -> str:
    """`path` relative to the working directory when it lies inside it, else absolute."""
    relative = os.path.relpath(os.path.abspath(path))
    return os.path.abspath(path) if relative == ".." or relative.startswith(".." + os.sep) else relative


def voc_converter_commands(converter: str, voc_root: str, output_dir: str) -> list:
    """The commands that turn the VOC tree into `output_dir/{train,val}-0000k-of-00004.tfrecord`
    (the template's converter writes fewer shards for a split of fewer than 4 examples).

    Each is run as its users run it, as a script (`sys.executable`; paths relative to
    the working directory when inside it, so the echoed commands read as typed):
    `deeplab` is DeepLab's `build_voc2012_data.py` (vendored in `third_party/deeplab/`)
    on the grey masks, as DeepLab's `download_and_convert_voc2012.sh` runs it; `template`
    is `tools/build_tfrecords.py` on VOC's palette masks, once per split.
    """
    voc_root, output_dir = _short_path(voc_root), _short_path(output_dir)
    if converter == "deeplab":
        return [
            [
                sys.executable,
                _short_path(os.path.join(REPO_ROOT, "third_party", "deeplab", "build_voc2012_data.py")),
                f"--image_folder={os.path.join(voc_root, 'JPEGImages')}",
                f"--semantic_segmentation_folder={os.path.join(voc_root, 'SegmentationClassRaw')}",
                f"--list_folder={os.path.join(voc_root, 'ImageSets', 'Segmentation')}",
                "--image_format=jpg",
                f"--output_dir={output_dir}",
            ]
        ]
    if converter == "template":
        split_lists = {
            split: os.path.join(voc_root, "ImageSets", "Segmentation", f"{split}.txt") for split in ("train", "val")
        }
        return [
            [
                sys.executable,
                _short_path(os.path.join(REPO_ROOT, "tools", "build_tfrecords.py")),
                f"--voc_root={voc_root}",
                f"--split={split}",
                "--voc_mask_folder=SegmentationClass",
                f"--output_prefix={os.path.join(output_dir, split)}",
                f"--num_shards={min(VOC_NUM_SHARDS, _count_lines(split_lists[split]))}",  # Its shards hold >= 1.
                f"--class_names={','.join(CLASS_NAMES)}",
            ]
            for split in ("train", "val")
        ]
    raise ValueError(f"unknown converter {converter!r}; one of {', '.join(VOC_CONVERTERS)}")


def write_voc_records(converter: str, voc_root: str, output_dir: str) -> dict:
    """Runs `converter`'s commands (each echoed, `+ ...`) and writes `output_dir/dataset.json` last.

    Raises:
      ValueError: a command failed (its own error is printed above) or wrote no shards.
    """
    os.makedirs(output_dir, exist_ok=True)  # DeepLab's converter expects it, as its shell script makes it.
    # The repository on the path: tools/build_tfrecords.py imports `core` and `data`,
    # installed or not; TF_CPP_MIN_LOG_LEVEL (set by main) keeps TensorFlow's C++ start-up quiet.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [REPO_ROOT, os.environ.get("PYTHONPATH")])))
    commands = voc_converter_commands(converter, voc_root, output_dir)
    for command in commands:
        print("+ " + shlex.join(["python", *command[1:]]), file=sys.stderr, flush=True)
        code = subprocess.run(command, env=env).returncode
        if code:
            raise ValueError(f"{os.path.basename(command[1])} exited {code} converting {voc_root}")
    with open(os.path.join(voc_root, "dataset.json")) as f:
        summary = {**json.load(f), "converter": converter, "commands": [command[1:] for command in commands]}
    for split in ("train", "val"):
        if not any(name.startswith(f"{split}-") and name.endswith(".tfrecord") for name in os.listdir(output_dir)):
            raise ValueError(f"{converter} converter wrote no {split}-*.tfrecord in {output_dir}")
    with open(os.path.join(output_dir, "dataset.json"), "w") as f:
        json.dump(summary, f, indent=2)
    return summary


# --for_config: what `make train CONFIG=...` runs before training.


def read_config(config_path: str, repo_root: str = None) -> dict:
    """The top-level macros of a gin file, after its `include`s, parsed by gin's own parser.

    Nothing is registered or evaluated: unknown configurables are kept as references
    (`TASK = @classification()` reads as `"@classification"`), `%gin.REQUIRED` as
    None, and `%OTHER_MACRO` as OTHER_MACRO's value. Includes resolve relative to
    `repo_root`, as `train.py` resolves them; later bindings override earlier ones.
    """
    with open(config_path) as f:
        raw, _ = gin_text.parse(f.read(), repo_root or REPO_ROOT, os.path.abspath(config_path))

    def value_of(value, depth=0):
        if isinstance(value, (list, tuple)):
            return type(value)(value_of(item, depth) for item in value)
        ref = gin_text.reference(value)
        if ref is None:
            return value
        if ref[0] == "macro":  # %NAME: its value (as gin resolves it: the last binding).
            return value_of(raw[ref[1]], depth + 1) if ref[1] in raw and depth < 10 else None
        if ref[0] == "constant":  # %gin.REQUIRED and other constants: not a value here.
            return None
        return "@" + ref[1]

    return {name: value_of(value) for name, value in raw.items() if "/" not in name}


def _train_files_folder(macros: dict):
    """The absolute folder of TRAIN_FILES (one pattern, relative to the working directory), or None."""
    train_files = macros.get("TRAIN_FILES")
    if isinstance(train_files, (list, tuple)) and len(train_files) == 1:
        train_files = train_files[0]
    if not isinstance(train_files, str):
        return None
    return os.path.dirname(os.path.abspath(train_files))


def voc_like_for_config(config_path: str, repo_root: str = None):
    """The VOC-like records the config trains on: `(converter, voc_like_root)`, or None when not those.

    Those: TRAIN_FILES lies in `datasets/voc_like/<converter>/` of `repo_root`, one of
    VOC_CONVERTERS (another folder there is the user's, and left alone).
    """
    repo_root = repo_root or REPO_ROOT
    folder = _train_files_folder(read_config(config_path, repo_root))
    voc_like_root = os.path.join(os.path.abspath(repo_root), VOC_LIKE_ROOT)
    if folder is None or os.path.dirname(folder) != voc_like_root or os.path.basename(folder) not in VOC_CONVERTERS:
        return None
    return os.path.basename(folder), voc_like_root


def prepare_voc_like(converter: str, voc_like_root: str, num_train=600, num_val=100, seed=0):
    """Writes the VOC tree if missing, then `converter`'s records from it if missing.

    Returns:
      The records' summary when written; None when they were already complete.
    """
    output_dir = os.path.join(voc_like_root, converter)
    if os.path.exists(os.path.join(output_dir, "dataset.json")):
        return None
    voc_root = os.path.join(voc_like_root, VOC_TREE)
    if not os.path.exists(os.path.join(voc_root, "dataset.json")):
        write_voc_tree(voc_root, num_train=num_train, num_val=num_val, seed=seed)
    return write_voc_records(converter, voc_root, output_dir)


def dataset_for_config(config_path: str, repo_root: str = None):
    """What the config trains on: `(task, output_dir, height, width)`, or None when not ours.

    Ours: TRAIN_FILES (relative to the working directory, as train.py reads it) lies
    in `datasets/synthetic*` of `repo_root`. TASK's selector names the task (no TASK:
    segmentation); IMAGE_HEIGHT and IMAGE_WIDTH are used when plain ints.
    """
    repo_root = repo_root or REPO_ROOT
    macros = read_config(config_path, repo_root)
    output_dir = _train_files_folder(macros)
    if output_dir is None:
        return None
    datasets = os.path.join(os.path.abspath(repo_root), os.path.dirname(DATASET_ROOT))
    ours = os.path.dirname(output_dir) == datasets and os.path.basename(output_dir).startswith(
        os.path.basename(DATASET_ROOT)
    )
    if not ours:
        return None
    reference = macros.get("TASK", "@segmentation")
    task = reference[1:].rsplit(".", 1)[-1] if isinstance(reference, str) and reference.startswith("@") else None
    if task not in TASKS:
        raise ValueError(
            f"{config_path}: TASK = {reference!r}: the synthetic data has the tasks "
            f"{', '.join('@' + name + '()' for name in TASKS)}"
        )
    sizes = [macros.get(name) for name in ("IMAGE_HEIGHT", "IMAGE_WIDTH")]
    height, width = [size if isinstance(size, int) and not isinstance(size, bool) else None for size in sizes]
    return task, output_dir, height, width


def prepare_for_config(config_path: str, repo_root: str = None, **write_args):
    """Writes the config's synthetic dataset when it is ours and missing.

    Ours: `datasets/synthetic*` (`dataset_for_config`), or the VOC-like records
    (`voc_like_for_config`: the VOC tree and the converter's records, `prepare_voc_like`,
    which takes `num_train`, `num_val` and `seed` of `write_args`).

    Returns:
      The dataset summary when written; None when the config trains on other data
      or the dataset is already complete (its `dataset.json` exists).

    Raises:
      ValueError: an unknown task, or a complete dataset of another task or image
        size than the config's (delete the folder to rewrite it), or a converter that failed.
    """
    voc_like = voc_like_for_config(config_path, repo_root)
    if voc_like is not None:
        counts = {key: write_args[key] for key in ("num_train", "num_val", "seed") if key in write_args}
        return prepare_voc_like(*voc_like, **counts)
    plan = dataset_for_config(config_path, repo_root)
    if plan is None:
        return None
    task, output_dir, height, width = plan
    marker = os.path.join(output_dir, "dataset.json")
    if os.path.exists(marker):
        with open(marker) as f:
            existing = json.load(f)
        found = (existing.get("task", "segmentation"), existing.get("height"), existing.get("width"))
        wanted = (task, height or found[1], width or found[2])
        if found != wanted:
            raise ValueError(
                f"{output_dir} holds a {found[0]} dataset of {found[1]}x{found[2]} images but {config_path} "
                f"wants {wanted[0]} at {wanted[1]}x{wanted[2]}; delete the folder to rewrite it"
            )
        return None
    if height:
        write_args["height"] = height
    if width:
        write_args["width"] = width
    return write_dataset(output_dir, task=task, **write_args)


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=TASKS, default="segmentation")
    parser.add_argument("--output_dir", default=None, help="Default: datasets/synthetic, or _TASK for another task.")
    parser.add_argument(
        "--for_config",
        default=None,
        help="A gin file: write its TRAIN_FILES dataset (task, sizes from the config) if it is ours and missing.",
    )
    parser.add_argument(
        "--voc_root",
        default=None,
        help="Instead of shards: write the VOC-like tree (variable-size JPEGs, VOC's masks and split lists) here.",
    )
    parser.add_argument("--num_train", type=int, default=None, help="Default: 2000 (the VOC-like tree: 600).")
    parser.add_argument("--num_val", type=int, default=None, help="Default: 400 (the VOC-like tree: 100).")
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num_shards", type=int, default=4)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # Before TensorFlow loads: no C++ start-up noise.
    # Counts left unset take the defaults of what is written: shards or the VOC-like tree.
    counts = {"num_train": args.num_train, "num_val": args.num_val, "seed": args.seed, "num_shards": args.num_shards}
    counts = {key: value for key, value in counts.items() if value is not None}
    if args.voc_root or args.for_config:
        if args.voc_root and args.task != "segmentation":
            parser.error("--voc_root writes segmentation masks; it takes no other --task")
        try:
            if args.voc_root:
                counts.pop("num_shards")
                write_voc_tree(args.voc_root, **counts)
            else:
                prepare_for_config(args.for_config, height=args.height, width=args.width, **counts)
        except (OSError, SyntaxError, ValueError) as error:
            sys.exit(f"error: {str(error).splitlines()[0]}")
        return
    output_dir = args.output_dir
    if output_dir is None:
        output_dir = DATASET_ROOT if args.task == "segmentation" else f"{DATASET_ROOT}_{args.task}"
    write_dataset(output_dir, height=args.height, width=args.width, task=args.task, **counts)


if __name__ == "__main__":
    main()
