"""Crashes, restarts and bad data: exact resume after SIGKILL (with random scale and crop
on), torn checkpoints, NaN losses, one trainer per directory, config integrity, and strict
input with one-line errors. Real subprocesses where the process is the point (SIGKILL, SIGTERM
and SIGINT, a lock held by another trainer, a read-only or full disk, the reference run; SIGTERM
and SIGINT reach a child of tests/zygote.py's server, forwarded by its client, the others a
fresh interpreter); the
other runs call train.py's and evaluate.py's roots in this process (`tests.helpers.run_in_process`:
the same flags, one-line errors and return code). Each test can fail, and the negative controls
show what stock behaviour does."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from data import schema, synthetic
from tests.conftest import REPO_ROOT, TINY_SIZE, tiny_gin_params
from tests.helpers import checkpoint_values, python, run_in_process, run_script

STEPS = 12


# Every run here trains with DeepLab's random scale, pad and crop on, so exact resume and
# determinism are checked with it.
SCALE_AND_CROP = {"MIN_SCALE_FACTOR": 0.5, "MAX_SCALE_FACTOR": 1.5, "SCALE_FACTOR_STEP_SIZE": 0.25}


def _args(model_dir, dataset, **overrides):
    overrides = {
        "TRAIN_STEPS": STEPS,
        "EVAL_EVERY_STEPS": 3,
        "export.image_size": None,
        **SCALE_AND_CROP,
        **overrides,
    }
    args = ["--gin_file=configs/synthetic.gin", f"--model_dir={model_dir}"]
    return args + [f"--gin_param={p}" for p in tiny_gin_params(dataset, **overrides)]


def _final_metrics(model_dir):
    from core import results

    return results.read_records(str(model_dir / "eval"))[-1]["metrics"]


def _start_training(model_dir, dataset, **overrides):
    """train.py in the background (a real process, for signals)."""
    return subprocess.Popen(
        [sys.executable, "train.py", *_args(model_dir, dataset, **overrides)],
        cwd=REPO_ROOT,
        env=dict(os.environ, PYTHONPATH=REPO_ROOT),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _kill_when(model_dir, dataset, ready, **overrides):
    """Starts train.py, waits until `ready(model_dir)` holds, then SIGKILLs it."""
    process = _start_training(model_dir, dataset, **overrides)
    deadline = time.time() + 120
    while not ready(model_dir) and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()


@pytest.fixture(scope="module")
def uninterrupted_in(tiny_dataset, tmp_path_factory):
    """`uninterrupted_in(precision)`: the uninterrupted run's model dir in that precision, trained once."""
    runs = {}

    def run(precision):
        if precision not in runs:
            runs[precision] = tmp_path_factory.mktemp("full") / "model"
            run_script("train.py", *_args(runs[precision], tiny_dataset, PRECISION=repr(precision)))
        return runs[precision]

    return run


@pytest.fixture(scope="module")
def uninterrupted(uninterrupted_in):
    return uninterrupted_in("float32")


def _has_checkpoint(step):
    return lambda model_dir: (model_dir / f"model.ckpt-{step}.index").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "point, ready, precision",
    [
        ("before the first checkpoint", lambda d: (d / "graph.pbtxt").exists(), "float32"),
        ("between checkpoints", _has_checkpoint(6), "float32"),
        ("during a save", lambda d: any(d.glob("model.ckpt-9*tmp*")) or (d / "model.ckpt-9.index").exists(), "float32"),
        ("between checkpoints", _has_checkpoint(6), "mixed_bfloat16"),  # Once in bfloat16 (issue 27).
    ],
)
def test_kill_and_resume_reproduces_the_uninterrupted_run(
    uninterrupted_in, tiny_dataset, tmp_path, point, ready, precision
):
    model_dir = tmp_path / "model"
    _kill_when(model_dir, tiny_dataset, ready, PRECISION=repr(precision))
    result = run_in_process("train.py", *_args(model_dir, tiny_dataset, PRECISION=repr(precision)))
    assert "error" not in result.stderr.lower(), result.stderr
    uninterrupted = uninterrupted_in(precision)
    expected, got = checkpoint_values(uninterrupted), checkpoint_values(model_dir)
    assert got["global_step"] == STEPS
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=f"{point}: {name}")
    for key, value in _final_metrics(uninterrupted).items():
        assert _final_metrics(model_dir)[key] == pytest.approx(value, rel=1e-6, abs=1e-12), key


def _steps_evaluated_so_far(model_dir):
    path = model_dir / "eval" / "results.jsonl"
    return path.exists() and path.read_text().endswith("\n")


def _steps_evaluated(model_dir):
    from core import results

    return [record["global_step"] for record in results.read_records(str(model_dir / "eval"))]


@pytest.mark.slow
@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_saves_the_step_stops_in_one_line_and_the_rerun_is_exact(
    uninterrupted, tiny_dataset, tmp_path, number
):
    """Preemption (SIGTERM) and Ctrl-C (SIGINT): the step in flight is saved, one line, exit 128 + signal;
    the same command then resumes from that step and ends with the uninterrupted run's weights."""
    model_dir = tmp_path / "model"
    process = subprocess.Popen(
        [python(), "train.py", *_args(model_dir, tiny_dataset)],
        cwd=REPO_ROOT,
        env=dict(os.environ, PYTHONPATH=REPO_ROOT),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while not _steps_evaluated_so_far(model_dir) and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)  # Step 3 is evaluated: training goes on (or, on a slow machine, evaluates step 6).
    process.send_signal(number)
    sent = time.time()
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + number, stderr
    assert time.time() - sent < 15
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    name = signal.Signals(number).name
    during_training = re.fullmatch(
        rf"stopped by {name} at step (\d+); checkpoint saved; rerun the same command to resume", last
    )
    during_evaluation = (
        f"stopped by {name} during an evaluation; nothing of it was written; rerun the same command to resume"
    )
    assert during_training or last == during_evaluation, last
    if during_training:
        stopped = int(during_training.group(1))
        assert 3 <= stopped < STEPS and (model_dir / f"model.ckpt-{stopped}.index").exists()
    run_in_process("train.py", *_args(model_dir, tiny_dataset))
    expected, got = checkpoint_values(uninterrupted), checkpoint_values(model_dir)
    for variable in expected:
        np.testing.assert_array_equal(got[variable], expected[variable], err_msg=variable)
    assert _final_metrics(model_dir) == _final_metrics(uninterrupted)
    steps = _steps_evaluated(model_dir)
    assert len(steps) == len(set(steps)) and set(_steps_evaluated(uninterrupted)) <= set(steps), steps


def test_a_checkpoint_saved_but_never_evaluated_is_evaluated_at_the_resume(uninterrupted, tiny_dataset, tmp_path):
    """A kill between a checkpoint's save and its evaluation: the resume evaluates it first,
    so it can become the best and be exported."""
    model_dir = tmp_path / "model"
    shutil.copytree(uninterrupted, model_dir)
    results_file = model_dir / "eval" / "results.jsonl"
    lines = results_file.read_text().splitlines(keepends=True)
    results_file.write_text("".join(lines[:-1]))  # The final step's evaluation never happened.
    result = run_in_process("train.py", *_args(model_dir, tiny_dataset))
    assert "nothing to do" in result.stdout
    assert _steps_evaluated(model_dir) == _steps_evaluated(uninterrupted)
    assert _final_metrics(model_dir) == _final_metrics(uninterrupted)


@pytest.mark.slow
def test_negative_control_stock_restart_replays_the_stream(uninterrupted, tiny_dataset, tmp_path):
    """Without the input-position restore (stock Estimator), the resumed run differs."""
    model_dir = tmp_path / "model"
    _kill_when(model_dir, tiny_dataset, _has_checkpoint(6), **{"make_input_fn.resume": False})
    run_in_process("train.py", *_args(model_dir, tiny_dataset, **{"make_input_fn.resume": False}))
    expected, got = checkpoint_values(uninterrupted), checkpoint_values(model_dir)
    assert any(not np.array_equal(got[name], expected[name]) for name in expected)


@pytest.mark.slow
def test_finished_job_reruns_as_a_no_op(uninterrupted, tiny_dataset):
    before = checkpoint_values(uninterrupted)
    result = run_in_process("train.py", *_args(uninterrupted, tiny_dataset))
    assert "nothing to do" in result.stdout
    assert all(np.array_equal(before[n], v) for n, v in checkpoint_values(uninterrupted).items())


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncate", "delete_data"])
def test_torn_newest_checkpoint_falls_back_to_the_previous_good_one(uninterrupted, tiny_dataset, tmp_path, damage):
    model_dir = tmp_path / "model"
    shutil.copytree(uninterrupted, model_dir)
    data = model_dir / f"model.ckpt-{STEPS}.data-00000-of-00001"
    if damage == "truncate":
        data.write_bytes(data.read_bytes()[:100])
    else:
        data.unlink()
    result = run_in_process("train.py", *_args(model_dir, tiny_dataset))
    assert f"model.ckpt-{STEPS} is torn" in result.stdout and f"resuming from {model_dir}/model.ckpt-9" in result.stdout
    assert tf.train.latest_checkpoint(str(model_dir)).endswith(f"model.ckpt-{STEPS}")
    expected, got = checkpoint_values(uninterrupted), checkpoint_values(model_dir)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


@pytest.mark.slow
def test_no_readable_checkpoint_stops_naming_the_file(uninterrupted, tiny_dataset, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(uninterrupted, model_dir)
    for data in model_dir.glob("model.ckpt-*.data-*"):
        data.write_bytes(b"")
    result = run_in_process("train.py", *_args(model_dir, tiny_dataset), check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: no readable checkpoint in {model_dir}")
    assert "model.ckpt-12, is torn" in result.stderr


@pytest.mark.slow
def test_nan_loss_stops_naming_the_step_and_never_saves_it(tiny_dataset, tmp_path):
    model_dir = tmp_path / "model"
    # An absurd learning rate: the weights blow up within a few steps.
    # A checkpoint every step: the run has trained past step 0 when the NaN comes, so its
    # progress is kept (a run that fails before any, leaves nothing: see below).
    overrides = {
        "build_model_fn.learning_rate": 1e30,
        "build_model_fn.decay_steps": 0,
        "TRAIN_STEPS": 40,
        "EVAL_EVERY_STEPS": 1,
        "train_and_evaluate.keep_checkpoint_max": 2,
    }
    result = run_in_process("train.py", *_args(model_dir, tiny_dataset, **overrides), check=False)
    assert result.returncode == 1
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: non-finite loss at step"), result.stderr
    step = int(line.split("step")[1].split()[0])
    latest = tf.train.latest_checkpoint(str(model_dir))
    assert int(latest.rsplit("-", 1)[1]) < step
    weights = checkpoint_values(model_dir)
    assert all(np.isfinite(v).all() for v in weights.values() if np.issubdtype(np.asarray(v).dtype, np.floating))
    # A restart fails the same way at the same step: it does not loop, and saves nothing bad.
    again = run_in_process("train.py", *_args(model_dir, tiny_dataset, **overrides), check=False)
    assert again.returncode == 1 and again.stderr.strip().splitlines()[-1] == line
    assert tf.train.latest_checkpoint(str(model_dir)) == latest


@pytest.mark.slow
def test_second_trainer_is_refused_and_a_stale_lock_does_not_block(tiny_dataset, tmp_path):
    model_dir = tmp_path / "model"
    overrides = {"TRAIN_STEPS": 400, "EVAL_EVERY_STEPS": 400}
    first = _start_training(model_dir, tiny_dataset, **overrides)
    try:
        deadline = time.time() + 60
        while not (model_dir / "graph.pbtxt").exists() and time.time() < deadline:
            time.sleep(0.1)
        second = run_in_process("train.py", *_args(model_dir, tiny_dataset, **overrides), check=False)
        assert second.returncode == 1
        assert "is already being trained by pid" in second.stderr.strip().splitlines()[-1]
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # The killed trainer's lock file is still there, but its lock died with it.
    assert (model_dir / ".trainer.lock").exists()
    third = run_in_process("train.py", *_args(model_dir, tiny_dataset, TRAIN_STEPS=3, EVAL_EVERY_STEPS=3), check=False)
    assert "already being trained" not in third.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "change, expected",
    [
        ({"unet.base_filters": 8}, ["unet.base_filters = 4", "this config has 8"]),
        ({"NETWORK": "@deeplab()"}, ["build_model_fn.network = @unet()", "this config has @deeplab()"]),
        ({"NUM_CLASSES": 5, "CLASS_NAMES": "['a', 'b', 'c', 'd', 'e']"}, ["segmentation.num_classes = 4"]),
    ],
    ids=["width", "network", "classes"],
)
def test_resuming_with_another_model_names_the_binding(uninterrupted, tiny_dataset, tmp_path, change, expected):
    model_dir = tmp_path / "model"
    shutil.copytree(uninterrupted, model_dir)
    result = run_in_process("train.py", *_args(model_dir, tiny_dataset, **change, TRAIN_STEPS=20), check=False)
    assert result.returncode == 1
    line = result.stderr.strip().splitlines()[-1]
    assert all(text in line for text in expected), line
    assert tf.train.latest_checkpoint(str(model_dir)).endswith(f"model.ckpt-{STEPS}")


@pytest.mark.slow
def test_resuming_with_another_learning_rate_is_allowed(uninterrupted, tiny_dataset, tmp_path):
    # Not a fixed list of "shape" bindings: what cannot be restored is judged from the variables.
    model_dir = tmp_path / "model"
    shutil.copytree(uninterrupted, model_dir)
    run_in_process(
        "train.py", *_args(model_dir, tiny_dataset, **{"build_model_fn.learning_rate": 1e-4}, TRAIN_STEPS=15)
    )
    assert tf.train.latest_checkpoint(str(model_dir)).endswith("model.ckpt-15")


# Strict input: each bad input ends in one line naming the file and record or value.


def _records(path):
    return list(tf.compat.v1.io.tf_record_iterator(str(path)))


def _write(path, records):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)


def _jpeg(image) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


# Damage that keeps the shard's record count: its index is written again, as the converter
# would have written it for these records, so training decodes through the cache (the
# default for an indexed split that fits: make_input_fn.decoded_cache_mb).
REINDEXED = ("not_an_example", "mask_size", "truncated_jpeg", "wrong_type", "label")


def _bad_split(tiny_dataset, tmp_path, kind, split="train", shard_index=1):
    """A copy of a tiny split with one kind of damage in one shard; returns that shard.

    The copy has no indexes (each shard is read record by record) but for the kinds in
    REINDEXED, whose shards are all indexed."""
    from data import records_index

    root = tmp_path / f"bad_{split}"
    root.mkdir()
    for source in sorted(tiny_dataset.glob(f"{split}-*.tfrecord")):
        shutil.copy(source, root / source.name)
        if kind in REINDEXED:
            records_index.write(str(root / source.name), records_index.read(str(source))["examples"])
    shard = sorted(root.glob(f"{split}-*.tfrecord"))[shard_index]
    records = _records(shard)
    examples = records_index.read(str(shard))["examples"] if kind in REINDEXED else None
    if kind == "corrupt":
        data = bytearray(shard.read_bytes())
        data[len(data) // 2] ^= 0xFF  # Inside a record's payload: its CRC no longer matches.
        shard.write_bytes(bytes(data))
    elif kind == "truncated":
        shard.write_bytes(shard.read_bytes()[:-10])
    elif kind == "empty":
        shard.write_bytes(b"")
    elif kind == "not_an_example":
        _write(shard, records[:1] + [b"\x0bthis is not a protocol buffer\xff\xff"] + records[2:])
    elif kind == "mask_size":
        image, mask = synthetic.make_example(3, "train", 0, TINY_SIZE, TINY_SIZE)
        odd = schema.make_example(image, "odd_mask.png", mask=mask[:, :16]).SerializeToString()
        _write(shard, records[:1] + [odd] + records[2:])
    elif kind == "truncated_jpeg":  # Its header reads; its pixels end early.
        image, mask = synthetic.make_example(3, "train", 0, TINY_SIZE, TINY_SIZE)
        example = schema.make_example(image, "cut.jpg", "jpeg", mask=mask)
        encoded = example.features.feature[schema.IMAGE_ENCODED].bytes_list.value
        encoded[0] = _jpeg(image)[:200]
        _write(shard, records[:1] + [example.SerializeToString()] + records[2:])
    elif kind == "wrong_type":  # The mask stored as integers, not PNG bytes.
        example = tf.train.Example.FromString(records[1])
        del example.features.feature[schema.MASK_ENCODED]
        example.features.feature[schema.MASK_ENCODED].int64_list.value.extend([1, 2, 3])
        _write(shard, records[:1] + [example.SerializeToString()] + records[2:])
    elif kind == "label":
        image, mask = synthetic.make_example(3, "train", 0, TINY_SIZE, TINY_SIZE)
        mask[5, 5] = 9
        bad = schema.make_example(image, "label_nine.png", mask=mask).SerializeToString()
        _write(shard, records[:1] + [bad] + records[2:])
    if examples is not None:
        records_index.write(str(shard), examples)
    return shard


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind, expected",
    [
        ("corrupt", "is corrupt or truncated (corrupted record at"),
        ("truncated", "is truncated"),
        ("not_an_example", "record 1 is not a"),
        ("mask_size", "mask size differs from its image size"),
        ("label", "label outside [0, 4) and not 255: 9"),
        ("truncated_jpeg", "record 1 (cut.jpg): image/encoded does not decode"),
        ("wrong_type", "record 1 (train_5.png): image/segmentation/class/encoded is int64_list, expected bytes_list"),
    ],
)
def test_bad_input_stops_with_one_line_and_the_model_dir_restores(
    uninterrupted, tiny_dataset, tmp_path, kind, expected
):
    from data import input as data_input
    from models.segmentation import Segmentation

    shard = _bad_split(tiny_dataset, tmp_path, kind)
    pattern = str(shard.parent / "train-*.tfrecord")
    if kind in REINDEXED:  # The damage is met through the decoded cache.
        assert data_input.make_input_fn(pattern, 4, TINY_SIZE, TINY_SIZE, Segmentation(4), training=True).cached
    model_dir = tmp_path / "model"
    shutil.copytree(uninterrupted, model_dir)
    pattern = repr(pattern)
    start = time.time()
    result = run_in_process(
        "train.py", *_args(model_dir, tiny_dataset, TRAIN_FILES=pattern, TRAIN_STEPS=30), check=False
    )
    assert time.time() - start < 60
    assert result.returncode == 1
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and expected in line, result.stderr[-2000:]
    named = {"mask_size": "odd_mask.png", "label": "label_nine.png"}.get(kind, shard.name)
    assert named in line, line
    checkpoint_values(model_dir)  # Still restores.
    assert tf.train.latest_checkpoint(str(model_dir)).endswith(f"model.ckpt-{STEPS}")


@pytest.mark.slow
def test_subset_index_beyond_the_split_is_named(uninterrupted, tiny_dataset):
    result = run_in_process("evaluate.py", *_args(uninterrupted, tiny_dataset), "--subset=1,70", check=False)
    assert result.returncode == 1
    assert "subset index 70 is beyond the split (7 examples" in result.stderr.strip().splitlines()[-1]


def test_no_files_matching_is_named(tiny_dataset, tmp_path):
    pattern = repr(str(tmp_path / "nothing-*.tfrecord"))
    result = run_in_process("train.py", *_args(tmp_path / "model", tiny_dataset, TRAIN_FILES=pattern), check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == f"error: no files match the pattern {pattern}"


@pytest.mark.slow
@pytest.mark.parametrize("fraction, ok", [(0.2, True), (0.05, False)])
def test_lenient_training_skips_and_counts_bad_records_up_to_a_fraction(tiny_dataset, tmp_path, fraction, ok):
    shard = _bad_split(tiny_dataset, tmp_path, "mask_size")  # 1 bad record of 12: 8.3%.
    pattern = repr(str(shard.parent / "train-*.tfrecord"))
    overrides = {
        "TRAIN_FILES": pattern,
        "train/make_input_fn.lenient": True,
        "train/make_input_fn.max_bad_fraction": fraction,
        "TRAIN_STEPS": 9,
    }
    result = run_in_process("train.py", *_args(tmp_path / "model", tiny_dataset, **overrides), check=False)
    if ok:
        assert result.returncode == 0, result.stderr[-2000:]
        assert tf.train.latest_checkpoint(str(tmp_path / "model")).endswith("model.ckpt-9")
    else:
        assert result.returncode == 1
        line = result.stderr.strip().splitlines()[-1]
        assert line.startswith("error: lenient mode: more than 5.00% bad records: skipped 1 of"), line


def test_lenient_mode_is_refused_for_evaluation(tiny_dataset):
    from common.errors import DataError
    from data.input import make_input_fn
    from models.segmentation import Segmentation

    with pytest.raises(DataError, match="evaluation is always strict"):
        make_input_fn(str(tiny_dataset / "val-*.tfrecord"), 2, TINY_SIZE, TINY_SIZE, Segmentation(4), lenient=True)


@pytest.mark.slow
def test_evaluation_of_a_corrupt_split_names_the_file(uninterrupted, tiny_dataset, tmp_path):
    shard = _bad_split(tiny_dataset, tmp_path, "corrupt", split="val", shard_index=0)
    pattern = repr(str(shard.parent / "val-*.tfrecord"))
    result = run_in_process(
        "evaluate.py", *_args(uninterrupted, tiny_dataset, VAL_FILES=pattern), "--eval_name=corrupt", check=False
    )
    assert result.returncode == 1
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: {shard}: record") and "is corrupt or truncated" in line, line
    assert not (uninterrupted / "eval_corrupt").exists()  # A failed evaluation leaves no eval directory.


@pytest.mark.slow
@pytest.mark.parametrize("existing", [False, True], ids=["new_dir", "empty_dir"])
def test_a_failed_first_run_leaves_the_model_dir_as_it_found_it(tiny_dataset, tmp_path, existing):
    model_dir = tmp_path / "model"
    if existing:
        model_dir.mkdir()
        (model_dir / "notes.txt").write_text("mine")
    wrong = {"NUM_CLASSES": 3, "CLASS_NAMES": "['background', 'circle', 'square']"}  # The data has 4.
    result = run_in_process("train.py", *_args(model_dir, tiny_dataset, **wrong), check=False)
    assert result.returncode == 1 and "label outside [0, 3)" in result.stderr, result.stderr[-1000:]
    if existing:
        assert sorted(p.name for p in model_dir.iterdir()) == [".trainer.lock", "notes.txt"]  # An empty lock file.
    else:
        assert not model_dir.exists()
    # The corrected command is accepted: nothing was trained, nothing refuses it.
    run_in_process("train.py", *_args(model_dir, tiny_dataset, TRAIN_STEPS=3))
    assert tf.train.latest_checkpoint(str(model_dir)).endswith("model.ckpt-3")


def _read_only_run(model_dir, *args):
    """train.py with `model_dir` bind-mounted read-only in a private mount namespace (`unshare`)."""
    return subprocess.run(
        ["unshare", "-rm", "sh", "-c", 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"']
        + [str(model_dir), sys.executable, "train.py", *args],
        cwd=REPO_ROOT,
        env=dict(os.environ, PYTHONPATH=REPO_ROOT),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_a_read_only_model_dir_shows_a_finished_run_and_refuses_to_train_in_one_line(
    uninterrupted, tiny_dataset, tmp_path
):
    if subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode != 0:
        pytest.skip("no private mount namespace here (unshare -rm)")
    model_dir = tmp_path / "model"
    shutil.copytree(uninterrupted, model_dir)
    finished = _read_only_run(model_dir, *_args(model_dir, tiny_dataset))
    assert finished.returncode == 0, finished.stderr
    assert "nothing to do" in finished.stdout and "mean_iou" in finished.stdout
    more = _read_only_run(model_dir, *_args(model_dir, tiny_dataset, TRAIN_STEPS=STEPS + 3))
    assert more.returncode == 1
    assert (
        more.stderr.strip().splitlines()[-1]
        == f"error: {model_dir} is read-only: cannot train it (its latest step is {STEPS})"
    )


@pytest.mark.parametrize("kind", ["file", "dangling link"])
def test_a_model_dir_that_is_not_a_directory_is_one_line(tiny_dataset, tmp_path, kind):
    model_dir = tmp_path / "model"
    if kind == "file":
        model_dir.write_text("not a directory")
        expected = f"error: {model_dir} is a file, not a directory"
    else:
        model_dir.symlink_to(tmp_path / "gone")
        expected = f"error: {model_dir} is a symbolic link to {tmp_path / 'gone'}, which does not exist"
    result = run_in_process("train.py", *_args(model_dir, tiny_dataset), check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == expected


def test_one_writer_per_eval_dir(uninterrupted, tmp_path):
    """A second evaluation of the same eval directory is refused with one line, as a second trainer is."""
    from common.errors import ModelDirError
    from core.model_dir import EvalDirLock

    eval_dir = tmp_path / "model" / "eval_x"
    with EvalDirLock(str(eval_dir)):
        with pytest.raises(ModelDirError, match=rf"^{eval_dir} is already being evaluated by pid {os.getpid()} "):
            EvalDirLock(str(eval_dir)).acquire()
    assert not (tmp_path / "model").exists()  # It made both folders, and took them away again.


@pytest.mark.slow
def test_a_full_disk_stops_in_one_line_and_the_rerun_loses_nothing(uninterrupted, tiny_dataset, tmp_path):
    """The model directory on a real (tmpfs) disk that fills up after the first evaluation:
    one line naming the file and the cause; once space is freed the same command completes
    with the uninterrupted run's weights, every checkpoint evaluated once, no leftovers."""
    if subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode != 0:
        pytest.skip("no private mount namespace here (unshare -rm)")
    (tmp_path / "mount").mkdir()
    dest = tmp_path / "model"
    run = subprocess.run(
        ["unshare", "-rm", sys.executable, "tests/full_disk_run.py", str(tmp_path / "mount"), str(dest), sys.executable]
        + ["train.py", *_args("unused", tiny_dataset)[:1], *_args("unused", tiny_dataset)[2:]],
        cwd=REPO_ROOT,
        env=dict(os.environ, PYTHONPATH=REPO_ROOT),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["first"] == 1
    line = r"error: \S*: ?No space left on device|error: .*No space left on device.*"
    assert re.fullmatch(line, report["line"]), report["stderr"]
    assert report["second"] == 0, report["second_stderr"]
    expected, got = checkpoint_values(uninterrupted), checkpoint_values(dest)
    for variable in expected:
        np.testing.assert_array_equal(got[variable], expected[variable], err_msg=variable)
    steps = _steps_evaluated(dest)
    assert sorted(set(steps)) == steps and set(_steps_evaluated(uninterrupted)) <= set(steps)
    leftovers = [p.name for p in dest.rglob("*") if re.search(r"\.tmp[0-9a-f]{32}$|_temp$|\.tmp$", p.name)]
    assert leftovers == []


@pytest.mark.slow
def test_torn_state_files_never_stick_a_resume(tiny_dataset, tmp_path):
    """A truncated eval event file (read by early stopping) and a corrupt best.json: the
    resume moves each aside with one line, keeps what was whole, and completes."""
    model_dir = tmp_path / "model"
    early = {"TRAIN_STEPS": 6, "best_checkpoint.early_stopping_evals": 5}
    run_in_process("train.py", *_args(model_dir, tiny_dataset, **early))
    (events,) = (model_dir / "eval").glob("events.out.tfevents.*")
    events.write_bytes(events.read_bytes()[:-7])
    (model_dir / "best.json").write_text('{"global_step": 6, "met')
    results_file = model_dir / "eval" / "results.jsonl"
    results_file.write_text(results_file.read_text()[:-100])  # Step 6's line torn (a full disk while appending).
    result = run_in_process("train.py", *_args(model_dir, tiny_dataset, **dict(early, TRAIN_STEPS=9)))
    assert re.search(rf"{re.escape(str(events))} is torn \(kept its first \d+ record\(s\)\); moved to ", result.stdout)
    assert re.search(rf"{re.escape(str(model_dir / 'best.json'))} is torn \(not JSON: .*\); moved to ", result.stdout)
    assert re.search(
        rf"{re.escape(str(results_file))} is torn \(1 unreadable line\(s\); kept its 1 whole", result.stdout
    )
    records = {r["global_step"]: r["metrics"]["mean_iou"] for r in _records_of(model_dir)}
    assert sorted(records) == [3, 6, 9]
    assert json.loads((model_dir / "best.json").read_text())["value"] == max(records.values())
    assert len(list((model_dir / "eval" / "torn").iterdir())) == 2 and len(list((model_dir / "torn").iterdir())) == 1


def test_turning_on_early_stopping_in_a_resumed_run_is_one_line(uninterrupted, tiny_dataset, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(uninterrupted, model_dir)
    more = {"TRAIN_STEPS": STEPS + 3, "best_checkpoint.early_stopping_evals": 2}
    result = run_in_process("train.py", *_args(model_dir, tiny_dataset, **more), check=False)
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .endswith(
            "was trained without early stopping: its checkpoint has no signal_early_stopping/STOP to restore; "
            "set best_checkpoint.early_stopping_evals only for a new --model_dir"
        )
    )


def _records_of(model_dir):
    from core import results

    return results.read_records(str(model_dir / "eval"))


def test_evaluate_takes_the_newest_checkpoint_that_still_exists(uninterrupted, tiny_dataset, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(uninterrupted, model_dir)
    for path in model_dir.glob(f"model.ckpt-{STEPS}.*"):  # Listed in `checkpoint`, gone from the disk.
        path.unlink()
    run_in_process("evaluate.py", *_args(model_dir, tiny_dataset), "--eval_name=newest")
    assert _steps_evaluated_in(model_dir / "eval_newest") == [9]


def _steps_evaluated_in(eval_dir):
    from core import results

    return [record["global_step"] for record in results.read_records(str(eval_dir))]
