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

Usage:
  python -m data.synthetic [--task=segmentation] --output_dir=datasets/synthetic
  python -m data.synthetic --task=classification --output_dir=datasets/synthetic_classification
  python -m data.synthetic --for_config=configs/classification.gin  # What `make train` runs.
"""

import json
import os
import sys
from typing import NamedTuple

import numpy as np

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


# --for_config: what `make train CONFIG=...` runs before training.


def read_config(config_path: str, repo_root: str = None) -> dict:
    """The top-level macros of a gin file, after its `include`s, parsed by gin's own parser.

    Nothing is registered or evaluated: unknown configurables are kept as references
    (`TASK = @classification()` reads as `"@classification"`), `%gin.REQUIRED` as
    None, and `%OTHER_MACRO` as OTHER_MACRO's value. Includes resolve relative to
    `repo_root`, as `train.py` resolves them; later bindings override earlier ones.
    """
    import gin
    from gin import config_parser

    repo_root = repo_root or REPO_ROOT
    macros = {}

    def value_of(value):
        if isinstance(value, (list, tuple)):
            return type(value)(value_of(item) for item in value)
        selector = getattr(value, "selector", None)
        if selector is None:
            return value
        scoped = getattr(value, "scoped_selector", selector)
        if selector == "gin.macro":  # %NAME
            return macros.get(scoped.rsplit("/", 1)[0])
        if selector == "gin.constant":  # %gin.REQUIRED and other constants: not a value here.
            return None
        return "@" + selector

    def parse(path, seen):
        if path in seen:
            raise ValueError(f"{path}: includes itself")
        with open(path) as f:
            text = f.read()
        parser = config_parser.ConfigParser(text, gin.config.ParserDelegate(skip_unknown=True))
        for statement in parser:
            if isinstance(statement, config_parser.IncludeStatement):
                included = os.path.join(repo_root, statement.filename)
                if not os.path.exists(included):
                    raise ValueError(f"{path}: include {statement.filename!r}: no such file in {repo_root}")
                parse(included, seen | {path})
            elif isinstance(statement, config_parser.BindingStatement) and not statement.arg_name:
                if not statement.scope:
                    macros[statement.selector] = value_of(statement.value)

    parse(os.path.abspath(config_path), frozenset())
    return macros


def dataset_for_config(config_path: str, repo_root: str = None):
    """What the config trains on: `(task, output_dir, height, width)`, or None when not ours.

    Ours: TRAIN_FILES (relative to the working directory, as train.py reads it) lies
    in `datasets/synthetic*` of `repo_root`. TASK's selector names the task (no TASK:
    segmentation); IMAGE_HEIGHT and IMAGE_WIDTH are used when plain ints.
    """
    repo_root = repo_root or REPO_ROOT
    macros = read_config(config_path, repo_root)
    train_files = macros.get("TRAIN_FILES")
    if isinstance(train_files, (list, tuple)) and len(train_files) == 1:
        train_files = train_files[0]
    if not isinstance(train_files, str):
        return None
    output_dir = os.path.dirname(os.path.abspath(train_files))
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

    Returns:
      The dataset summary when written; None when the config trains on other data
      or the dataset is already complete (its `dataset.json` exists).

    Raises:
      ValueError: an unknown task, or a complete dataset of another task or image
        size than the config's (delete the folder to rewrite it).
    """
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
    parser.add_argument("--num_train", type=int, default=2000)
    parser.add_argument("--num_val", type=int, default=400)
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num_shards", type=int, default=4)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # Before TensorFlow loads: no C++ start-up noise.
    counts = {"num_train": args.num_train, "num_val": args.num_val, "seed": args.seed, "num_shards": args.num_shards}
    if args.for_config:
        try:
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
