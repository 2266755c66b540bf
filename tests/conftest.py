"""Shared fixtures: a tiny synthetic dataset written once per test session; the order in
which `make test`'s two processes take the test files."""

import os
import signal

import pytest

from common import runtime

REPO_ROOT = runtime.REPO_ROOT
runtime.quiet()  # TensorFlow's C++ logs hidden here and in every subprocess a test starts.
# `make test &` in a script (a shell without job control) starts the suite with SIGINT ignored,
# and every command a test starts would inherit that: the Ctrl-C tests need it as a terminal has it.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# Seconds each slow file takes (pytest --durations=0 in the checkout, 2026-12-06, after evaluation's
# autotuning went off). pytest-xdist's --dist loadfile hands out whole files, the most tests first;
# by time, longest first, no long file starts last and runs alone at the end (the
# longest-processing-time rule).
SLOW_FILES = {
    "test_docs.py": 304,
    "test_robustness.py": 202,
    "test_cluster.py": 118,
    "test_evaluate.py": 86,
    "test_estimator.py": 52,
    "test_gpu_ops.py": 51,
    "test_trainer_evaluator.py": 45,
    "test_tasks_end_to_end.py": 35,
    "test_warm_start.py": 32,
    "test_intake.py": 30,
    "test_end_to_end.py": 27,
    "test_eval_sets.py": 26,
    "test_export_predict.py": 25,
    "test_any_size.py": 23,
    "test_precision.py": 20,
    "test_estimator_upstream.py": 19,
}


def pytest_xdist_make_scheduler(config, log):
    """`--dist loadfile` taking the slowest files first (SLOW_FILES; others by their test count)."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class SlowestFirst(LoadFileScheduling):
        def _assign_work_unit(self, node):
            def seconds(scope):
                return SLOW_FILES.get(os.path.basename(scope.split("::")[0]), 0.5 * len(self.workqueue[scope]))

            self.workqueue.move_to_end(max(self.workqueue, key=seconds), last=False)
            super()._assign_work_unit(node)

    return SlowestFirst(config, log)


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


def _base_augmentations():
    """configs/base.gin's AUGMENTATIONS as gin text (`[@op(), ...]`), read with gin's parser."""
    from common import gin_text

    with open(os.path.join(REPO_ROOT, "configs", "base.gin")) as f:
        macros, _ = gin_text.parse(f.read())
    ops = [gin_text.reference(op) for op in macros["AUGMENTATIONS"]]
    return "[" + ", ".join(f"@{selector}{'()' if called else ''}" for _, selector, called in ops) + "]"


BASE_AUGMENTATIONS = _base_augmentations()


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
        # base.gin's augmentations, which configs/synthetic.gin turns off: resume and determinism
        # tests on it keep checking their random streams.
        "AUGMENTATIONS": BASE_AUGMENTATIONS,
    }
    params.update({key: str(value) for key, value in overrides.items()})
    return [f"{key} = {value}" for key, value in params.items()]
