"""Shared fixtures: a tiny synthetic dataset written once per test session."""

import pytest

from common import runtime

REPO_ROOT = runtime.REPO_ROOT
runtime.hide_native_logs()  # Here and in every subprocess a test starts.
runtime.quiet()

TINY_SIZE = 32
TINY_TRAIN = 12
TINY_VAL = 7


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """A 32x32 synthetic dataset: 12 train and 7 val examples, 3 and 2 shards."""
    from data import synthetic, writer

    root = tmp_path_factory.mktemp("tiny")
    for split, count, shards in (("train", TINY_TRAIN, 3), ("val", TINY_VAL, 2)):
        examples = (
            {**synthetic.example("segmentation", 1, split, i, TINY_SIZE, TINY_SIZE), "filename": f"{split}_{i}.png"}
            for i in range(count)
        )
        writer.write_shards(examples, count, str(root / split), shards, progress=False)
    return root


def tiny_gin_params(dataset_root, **overrides):
    """Gin bindings for a fast run on `tiny_dataset` (a list for --gin_param)."""
    params = {
        "TRAIN_FILES": repr(str(dataset_root / "train-*.tfrecord")),
        "VAL_FILES": repr(str(dataset_root / "val-*.tfrecord")),
        "IMAGE_HEIGHT": str(TINY_SIZE),
        "IMAGE_WIDTH": str(TINY_SIZE),
        "TRAIN_STEPS": "6",
        "EVAL_EVERY_STEPS": "3",
        "TRAIN_BATCH_SIZE": "4",
        "EVAL_BATCH_SIZE": "3",
        "unet.base_filters": "4",
        "unet.depth": "2",
        "build_model_fn.warmup_steps": "0",  # A few steps: no warm-up, so the weights move from the first.
    }
    params.update({key: str(value) for key, value in overrides.items()})
    return [f"{key} = {value}" for key, value in params.items()]
