"""Benchmark: fine-tuning (WARM_START_FROM) against training from scratch, at equal steps.

1. Pretrain: the default U-Net on the synthetic set (`datasets/synthetic/`, 4 classes,
   2,000 examples; written first if missing) for `--pretrain_steps`, or take a trained
   template model directory (`--source=runs/synthetic`, e.g. after `make train`).
2. A small new dataset: `--train_examples` (64) training and 400 val images never
   seen in pretraining (another generator seed), relabelled with another class set,
   background / round (circles) / angular (squares and triangles), so the head's
   shape differs and warm start skips it.
3. Train `--steps` on it twice, same seed and data order: fine-tuned (every variable
   but the head from the pretrained checkpoint) and from scratch. Each is evaluated
   once, at the end, on the whole val split.

Prints both mean IoUs and, last, one JSON object with their ratio.

    .venv/bin/python bench/warm_start.py [--steps=200] [--source=runs/synthetic]
"""

import argparse
import io
import json
import os
import tempfile
import time

import numpy as np

from common import runtime

runtime.hide_native_logs()

from common import determinism  # noqa: E402  After the line above: it loads TensorFlow.

SIZE = 64
NUM_VAL = 400
TARGET_SEED = 5  # The pretraining set is seed 0: other images.
TARGET_CLASSES = ["background", "round", "angular"]
RELABEL = np.arange(256, dtype=np.uint8)
RELABEL[[0, 1, 2, 3]] = [0, 1, 2, 2]  # Circle -> round; square, triangle -> angular; 255 stays ignore.
GIN_FILE = os.path.join(runtime.REPO_ROOT, "configs", "synthetic.gin")


def _target_dataset(num_train: int) -> str:
    """Writes (once) the small relabelled dataset; returns its folder."""
    from data import synthetic, writer

    root = os.path.join(runtime.REPO_ROOT, "datasets", f"bench_warm_start_{SIZE}_{num_train}")
    marker = os.path.join(root, "done")
    if not os.path.exists(marker):
        for split, count, shards in (("train", num_train, 2), ("val", NUM_VAL, 4)):
            examples = (
                {**example, "mask": RELABEL[example["mask"]]}
                for example in (
                    synthetic.example("segmentation", TARGET_SEED, split, i, SIZE, SIZE) for i in range(count)
                )
            )
            writer.write_shards(examples, count, os.path.join(root, split), shards, progress=False)
        open(marker, "w").close()
    return root


def _train(model_dir: str, params: dict) -> dict:
    """train.py's root on configs/synthetic.gin plus `params`; returns the last results record."""
    import gin

    from core import configurables

    bindings = {"export.image_size": "None", **params}
    gin.clear_config()
    try:
        configurables.parse_gin([GIN_FILE], [f"{key} = {value}" for key, value in bindings.items()])
        return configurables.train_and_evaluate(model_dir=model_dir, stream=io.StringIO())
    finally:
        gin.clear_config()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200, help="training steps on the small set, each run")
    parser.add_argument("--train_examples", type=int, default=64)
    parser.add_argument("--pretrain_steps", type=int, default=1000)
    parser.add_argument("--source", default=None, help="a trained template model dir: skip pretraining")
    parser.add_argument("--work_dir", default=None, help="where the runs go (default: a new temporary folder)")
    args = parser.parse_args(argv)
    runtime.quiet()
    determinism.configure()
    from data import synthetic

    work_dir = args.work_dir or tempfile.mkdtemp(prefix="bench_warm_start_")
    start = time.perf_counter()
    source = args.source
    if source is None:
        synthetic.prepare_for_config(GIN_FILE, runtime.REPO_ROOT)
        source = os.path.join(work_dir, "pretrained")
        steps = args.pretrain_steps
        record = _train(source, {"TRAIN_STEPS": steps, "EVAL_EVERY_STEPS": steps})
        print(
            f"pretrained {source}: {steps} steps on datasets/synthetic (4 classes), "
            f"mean IoU {record['metrics']['mean_iou']:.4f}, {time.perf_counter() - start:.0f} s",
            flush=True,
        )
    target = _target_dataset(args.train_examples)
    common = {
        "TRAIN_FILES": repr(os.path.join(target, "train-*.tfrecord")),
        "VAL_FILES": repr(os.path.join(target, "val-*.tfrecord")),
        "NUM_CLASSES": len(TARGET_CLASSES),
        "CLASS_NAMES": repr(TARGET_CLASSES),
        "TRAIN_STEPS": args.steps,
        "EVAL_EVERY_STEPS": args.steps,
    }
    results = {}
    for name, warm_start_from in (("fine_tuned", source), ("scratch", None)):
        run_start = time.perf_counter()
        model_dir = os.path.join(work_dir, name)
        record = _train(model_dir, {**common, "WARM_START_FROM": repr(warm_start_from)})
        results[name] = record["metrics"]["mean_iou"]
        print(
            f"{name:>10}: mean IoU {results[name]:.4f} after {args.steps} steps on {args.train_examples} examples "
            f"({model_dir}, {time.perf_counter() - run_start:.0f} s)",
            flush=True,
        )
    print(
        json.dumps(
            {
                "fine_tuned_mean_iou": round(results["fine_tuned"], 4),
                "scratch_mean_iou": round(results["scratch"], 4),
                "fine_tuned_to_scratch_ratio": round(results["fine_tuned"] / results["scratch"], 3),
                "steps": args.steps,
                "train_examples": args.train_examples,
                "val_examples": NUM_VAL,
                "pretrain_steps": None if args.source else args.pretrain_steps,
                "seconds": round(time.perf_counter() - start, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
