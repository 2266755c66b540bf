"""evaluate.py and the evaluation hooks: subsets, worst-k, image summaries read back with
TensorBoard's loader, continuous mode, backfill, best checkpoint, exporters, early stopping."""

import json
import os
import shutil
import subprocess
import time

import numpy as np
import pytest
import tensorflow as tf

from core import results
from core.evaluation import subset_eval_name
from metrics import bootstrap
from tests.conftest import REPO_ROOT, TINY_VAL, tiny_gin_params
from tests.helpers import event_tags, python, run_in_process, run_script


def _args(model_dir, dataset, **overrides):
    args = ["--gin_file=configs/synthetic.gin", f"--model_dir={model_dir}"]
    return args + [f"--gin_param={p}" for p in tiny_gin_params(dataset, EVAL_EVERY_STEPS=2, **overrides)]


def _evaluate(model_dir, dataset, *extra, check=True, **overrides):
    """evaluate.py's root, in this process (`run_in_process`): these tests are about what it
    writes, not the process; test_continuous_times_out... runs the real evaluate.py."""
    return run_in_process("evaluate.py", *_args(model_dir, dataset, **overrides), *extra, check=check)


def _image_tags(directory):
    return {tag: steps for tag, steps in event_tags(directory).items() if tag.startswith("images/")}


@pytest.fixture(scope="module")
def trained(tiny_dataset, tmp_path_factory):
    """Checkpoints at steps 0, 2, 4, 6 with an evaluation at 2, 4 and 6."""
    model_dir = tmp_path_factory.mktemp("eval") / "model"
    run_in_process("train.py", *_args(model_dir, tiny_dataset, SUMMARY_INDICES=[0, 5]))
    return model_dir


@pytest.mark.slow
def test_training_writes_panels_tables_csv_best_and_exports(trained):
    eval_dir = trained / "eval"
    images = _image_tags(eval_dir)
    assert images == {"images/index_00000/0": [2, 4, 6], "images/index_00005/0": [2, 4, 6]}
    tags = event_tags(eval_dir)
    assert tags["summary/confusion_matrix/0"] == [2, 4, 6] and tags["summary/per_class/0"] == [2, 4, 6]
    checkpoint, rows = results.read_per_example(str(eval_dir / "per_example-6.csv"))
    assert checkpoint.endswith("model.ckpt-6")
    assert sorted(index for index, _ in rows) == list(range(TINY_VAL))
    scores = [score for _, score in rows]
    assert scores == sorted(scores)  # Worst first.
    records = results.read_records(str(eval_dir))
    # Each example's confusion counts: they sum to the streaming metrics, and give the intervals.
    kept = results.read_statistics(str(eval_dir / "statistics-6.npz"))
    assert kept["checkpoint"].endswith("model.ckpt-6") and list(kept["index"]) == list(range(TINY_VAL))
    assert kept["task"] == "segmentation" and len(kept["filenames"]) == TINY_VAL
    whole = bootstrap.confusion_metrics(kept["statistics"]["confusion"].sum(0).reshape(1, 4, 4), range(4))
    assert whole["mean_iou"][0] == pytest.approx(records[-1]["metrics"]["mean_iou"], abs=1e-12)
    interval = records[-1]["ci"]["mean_iou"]
    assert interval["low"] <= records[-1]["metrics"]["mean_iou"] <= interval["high"]
    assert set(records[-1]["ci"]) >= {f"iou/{name}" for name in records[-1]["per_class"]}
    assert tags["confidence_intervals"] == [2, 4, 6] and tags["summary/reliability/0"] == [2, 4, 6]
    assert {"ece", "boundary_iou"} <= set(records[-1]["metrics"])
    assert all("boundary_iou" in values for values in records[-1]["per_class"].values())
    best = json.loads((trained / "best.json").read_text())
    assert best["value"] == max(r["metrics"]["mean_iou"] for r in records)
    assert tf.train.latest_checkpoint(str(trained / "best")).endswith(f"model.ckpt-{best['global_step']}")
    for exporter in ("best", "latest"):
        exports = os.listdir(trained / "export" / exporter)
        assert exports and all(name.isdigit() for name in exports), exports


@pytest.mark.slow
def test_compare_shows_the_changed_examples_as_each_checkpoints_panels(trained, tiny_dataset, capsys):
    from tools import compare

    params = [f"--gin_param={p}" for p in tiny_gin_params(tiny_dataset, EVAL_EVERY_STEPS=2)]
    assert (
        compare.main([f"{trained}/eval@2", f"{trained}/eval", "--top=2", "--gin_file=configs/synthetic.gin", *params])
        == 0
    )
    out = capsys.readouterr().out
    changed = [int(line.split()[1]) for line in out.splitlines() if line.startswith("  index ")]
    assert len(changed) == 2 and "panels: tensorboard --logdir_spec=A:" in out
    for side, step in (("a", 2), ("b", 6)):
        record = results.read_records(str(trained / f"eval_compare_{side}"))[-1]
        assert record["global_step"] == step and record["num_examples"] == 2
        assert set(_image_tags(trained / f"eval_compare_{side}")) == {f"images/index_{i:05d}/0" for i in changed}


@pytest.mark.slow
@pytest.mark.parametrize("batch_size", [2, 7])
def test_subset_evaluates_and_shows_exactly_the_chosen_examples(trained, tiny_dataset, batch_size):
    name = f"pick{batch_size}"
    result = _evaluate(trained, tiny_dataset, "--subset=6,1,4", f"--eval_name={name}", EVAL_BATCH_SIZE=batch_size)
    assert "evaluating 3 example(s)" in result.stdout
    record = results.read_records(str(trained / f"eval_{name}"))[-1]
    assert record["num_examples"] == 3 and record["global_step"] == 6
    images = _image_tags(trained / f"eval_{name}")
    assert images == {f"images/index_{i:05d}/0": [6] for i in (1, 4, 6)}
    # The full evaluation's results are untouched.
    assert [r["global_step"] for r in results.read_records(str(trained / "eval"))] == [2, 4, 6]


@pytest.mark.slow
def test_default_subset_name_and_results_do_not_mix(trained, tiny_dataset):
    _evaluate(trained, tiny_dataset, "--subset=2,3")
    eval_dir = trained / f"eval_{subset_eval_name([2, 3])}"
    assert results.read_records(str(eval_dir))[-1]["num_examples"] == 2


@pytest.mark.slow
def test_worst_k_shows_the_lowest_scoring_examples(trained, tiny_dataset):
    _, rows = results.read_per_example(str(trained / "eval" / "per_example-6.csv"))
    worst = sorted(index for index, _ in rows[:2])
    _evaluate(trained, tiny_dataset, "--worst_k=2")
    assert set(_image_tags(trained / "eval_worst_2")) == {f"images/index_{i:05d}/0" for i in worst}
    record = results.read_records(str(trained / "eval_worst_2"))[-1]
    assert record["num_examples"] == 2 and record["checkpoint"].endswith("model.ckpt-6")


@pytest.mark.slow
def test_backfill_skips_evaluated_checkpoints_and_resumes(trained, tiny_dataset):
    first = _evaluate(trained, tiny_dataset, "--all_checkpoints", "--eval_name=backfill")
    assert "4 checkpoint(s), 0 already evaluated" in first.stdout
    path = trained / "eval_backfill" / "results.jsonl"
    lines = path.read_text().splitlines()
    assert [json.loads(line)["global_step"] for line in lines] == [0, 2, 4, 6]
    path.write_text("\n".join(lines[:2]) + "\n")  # As if interrupted after two.
    second = _evaluate(trained, tiny_dataset, "--all_checkpoints", "--eval_name=backfill")
    assert "4 checkpoint(s), 2 already evaluated" in second.stdout
    assert [r["global_step"] for r in results.read_records(str(trained / "eval_backfill"))] == [0, 2, 4, 6]


@pytest.mark.slow
def test_per_class_logging_hook_reports_every_n_batches(trained, tiny_dataset):
    result = _evaluate(
        trained,
        tiny_dataset,
        "--eval_name=logged",
        **{"EVAL_HOOKS": "[@per_class_logging()]", "per_class_logging.every_n_steps": 1},
    )
    lines = [line for line in result.stdout.splitlines() if line.strip().startswith("eval batch")]
    assert len(lines) == 3 and "IoU background" in lines[0]  # 7 examples, batches of 3.


@pytest.mark.slow
def test_continuous_times_out_with_a_message_when_no_final_step(trained, tiny_dataset):
    start = time.time()
    result = run_script(  # The real evaluate.py: its exit status and its one line.
        "evaluate.py",
        *_args(trained, tiny_dataset, TRAIN_STEPS=99),
        "--continuous",
        "--timeout_secs=2",
        "--eval_name=waiting",
        check=False,
        fresh=True,
    )
    assert result.returncode == 1
    assert "no new checkpoint" in result.stderr and "final step 99" in result.stderr
    assert time.time() - start < 60
    assert [r["global_step"] for r in results.read_records(str(trained / "eval_waiting"))] == [6]


@pytest.mark.slow
def test_continuous_picks_up_new_checkpoints_until_the_final_step(tiny_dataset, tmp_path):
    model_dir = tmp_path / "model"
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    output = tmp_path / "evaluator.out"
    with output.open("w") as stdout:
        evaluator = subprocess.Popen(
            [
                python(),
                "evaluate.py",
                *_args(model_dir, tiny_dataset),
                "--continuous",
                "--timeout_secs=60",
                "--eval_name=watcher",
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
        )
    # The training runs in this process, once the evaluator is following (past its start-up):
    # as when both start together, it sees the checkpoints as they come.
    deadline = time.time() + 120
    while "following" not in output.read_text() and evaluator.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    run_in_process("train.py", *_args(model_dir, tiny_dataset))
    _, stderr = evaluator.communicate(timeout=120)
    stdout = output.read_text()
    assert evaluator.returncode == 0, stderr
    assert "evaluated the final step 6" in stdout
    # Its own eval directory: the trainer's early stopping reads model_dir/eval's event
    # files, and a second writer there can leave a half-written record under it.
    steps = [r["global_step"] for r in results.read_records(str(model_dir / "eval_watcher"))]
    assert steps[-1] == 6 and steps == sorted(set(steps)) and len(steps) >= 2


@pytest.mark.slow
def test_best_checkpoint_survives_keep_checkpoint_max_1_and_a_restart(tiny_dataset, tmp_path):
    model_dir = tmp_path / "model"
    overrides = {"train_and_evaluate.keep_checkpoint_max": 1, "TRAIN_STEPS": 6}
    run_in_process("train.py", *_args(model_dir, tiny_dataset, **overrides))
    best = json.loads((model_dir / "best.json").read_text())
    reader = tf.train.load_checkpoint(str(model_dir / "best"))
    assert reader.get_tensor("global_step") == best["global_step"]
    # Restart with a longer budget and no best.json: history comes back from results.jsonl.
    (model_dir / "best.json").unlink()
    run_in_process("train.py", *_args(model_dir, tiny_dataset, **dict(overrides, TRAIN_STEPS=10)))
    records = results.read_records(str(model_dir / "eval"))
    assert [r["global_step"] for r in records] == [2, 4, 6, 8, 10]
    best_value = max(r["metrics"]["mean_iou"] for r in records)
    later_best = max(r["metrics"]["mean_iou"] for r in records[3:])
    if later_best > max(r["metrics"]["mean_iou"] for r in records[:3]):
        assert json.loads((model_dir / "best.json").read_text())["value"] == best_value
    else:  # Nothing after the restart beat the old best: no worse checkpoint was kept.
        assert not (model_dir / "best.json").exists()


def test_export_best_is_the_best_checkpoint_after_a_restart_and_a_worse_evaluation(tiny_dataset, tmp_path):
    """Stock BestExporter exports at the first evaluation of every process and keeps one export,
    so a resumed run's first (worse) evaluation would replace export/best/. Here it stays the
    model of the checkpoint in best/, and a stale or missing export is made again from best/."""
    from core.best import exported_step, exported_versions

    model_dir = tmp_path / "model"
    run_in_process("train.py", *_args(model_dir, tiny_dataset, TRAIN_STEPS=4))
    best = json.loads((model_dir / "best.json").read_text())
    (first,) = exported_versions(str(model_dir / "export" / "best"))
    assert exported_step(first) == best["global_step"]
    # Nothing after the restart can become the best (a margin no run beats): every later evaluation is worse.
    worse = {"TRAIN_STEPS": 6, "BEST_RULE": "@better_by_margin()", "better_by_margin.margin": 10.0}
    run_in_process("train.py", *_args(model_dir, tiny_dataset, **worse))
    assert [r["global_step"] for r in results.read_records(str(model_dir / "eval"))] == [2, 4, 6]
    assert json.loads((model_dir / "best.json").read_text()) == best
    assert exported_versions(str(model_dir / "export" / "best")) == [first]  # Not exported again.
    # A stale export (here the latest one, of step 6) is replaced by the best checkpoint's model.
    shutil.rmtree(first)
    shutil.copytree(exported_versions(str(model_dir / "export" / "latest"))[-1], first)
    run_in_process("train.py", *_args(model_dir, tiny_dataset, **dict(worse, TRAIN_STEPS=8)))
    (again,) = exported_versions(str(model_dir / "export" / "best"))
    assert (
        exported_step(again)
        == best["global_step"]
        == tf.train.load_checkpoint(str(model_dir / "best")).get_tensor("global_step")
    )


def test_panels_are_image_truth_prediction_errors():
    from metrics.summaries import mask_panels as make_panels

    images = np.full((1, 2, 2, 3), 7, np.uint8)
    labels = np.array([[[0, 1], [255, 1]]])
    predictions = np.array([[[0, 0], [1, 1]]])
    panel = make_panels(tf.constant(images), tf.constant(labels), tf.constant(predictions)).numpy()[0]
    assert panel.shape == (2, 8, 3)
    np.testing.assert_array_equal(panel[:, :2], images[0])
    errors = panel[:, 6:]
    assert tuple(errors[0, 1]) == (255, 40, 40)  # Wrong.
    assert tuple(errors[0, 0]) == (30, 30, 30)  # Right.
    assert tuple(errors[1, 0]) == (255, 255, 255)  # Ignored.
