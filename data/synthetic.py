"""A learnable synthetic segmentation dataset: shapes on textured, noisy backgrounds.

Classes: 0 background, 1 circle, 2 square, 3 triangle. Squares and triangles are
upright up to a small tilt, every colour is random (so colour says nothing about the class), and the
backgrounds mix a gradient, stripes and noise. As in PASCAL VOC, a thin band on
every object boundary is labelled 255 (ignore).

Every example is a pure function of `(seed, split, index)`, so example 17 of the
val split is the same whatever the split size, and two runs write identical files.

Usage:
  python -m data.synthetic --output_dir=datasets/synthetic
"""

import json
import os
import sys

import numpy as np

CLASS_NAMES = ("background", "circle", "square", "triangle")
SPLIT_IDS = {"train": 0, "val": 1}


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


def make_example(seed: int, split: str, index: int, height: int = 64, width: int = 64):
    """Returns `(image uint8 [H,W,3], mask uint8 [H,W])` for one example."""
    rng = np.random.default_rng([seed, SPLIT_IDS[split], index])
    image = _background(rng, height, width)
    mask = np.zeros((height, width), np.uint8)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    short_side = min(height, width)
    for _ in range(rng.integers(1, 5)):
        kind = int(rng.integers(1, len(CLASS_NAMES)))
        radius = rng.uniform(0.1, 0.22) * short_side
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        # A small tilt only: edge orientation stays a local cue (square: axis-aligned
        # edges, triangle: diagonal ones, circle: curved), so a small net learns fast.
        tilt = rng.uniform(-0.2, 0.2) + (np.pi / 2 if kind == 3 else 0.0)
        inside = _shape_mask(kind, yy, xx, cy, cx, radius, tilt)
        local_mean = image[inside].mean(axis=0) if inside.any() else None
        colour = _random_colour(rng, away_from=local_mean)
        image[inside] = colour + rng.normal(0, 8, size=(int(inside.sum()), 3))
        mask[inside] = kind
    image += rng.normal(0, rng.uniform(4, 14), size=image.shape)
    # Ignore a one-pixel band on each side of every boundary, as VOC does.
    padded = np.pad(mask, 1, mode="edge")
    boundary = np.zeros_like(mask, dtype=bool)
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        boundary |= padded[dy : dy + height, dx : dx + width] != mask
    mask[boundary] = 255
    return np.clip(image, 0, 255).astype(np.uint8), mask


def write_dataset(output_dir, num_train=2000, num_val=400, height=64, width=64, seed=0, num_shards=4):
    """Writes `train-*` and `val-*` shards and, last, `dataset.json` (the completion mark)."""
    from data import writer

    summary = {"class_names": list(CLASS_NAMES), "height": height, "width": width, "seed": seed}
    for split, count in (("train", num_train), ("val", num_val)):
        examples = ((*make_example(seed, split, i, height, width), f"{split}_{i:06d}.png") for i in range(count))
        stats = writer.write_shards(examples, count, os.path.join(output_dir, split), min(num_shards, count))
        print(f"{split}: {count} examples, pixels per class:", file=sys.stderr)
        print(writer.format_pixel_counts(stats["pixel_counts"], CLASS_NAMES), file=sys.stderr)
        summary[f"num_{split}"] = count
    with open(os.path.join(output_dir, "dataset.json"), "w") as f:
        json.dump(summary, f, indent=2)
    return summary


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", default="datasets/synthetic")
    parser.add_argument("--num_train", type=int, default=2000)
    parser.add_argument("--num_val", type=int, default=400)
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num_shards", type=int, default=4)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # Before TensorFlow loads: no C++ start-up noise.
    write_dataset(args.output_dir, args.num_train, args.num_val, args.height, args.width, args.seed, args.num_shards)


if __name__ == "__main__":
    main()
