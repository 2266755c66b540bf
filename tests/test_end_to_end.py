"""train.py end to end on a tiny dataset: checkpoints, events, saved config, results,
determinism, idempotent re-runs, and gin errors before any graph is built."""

import json
import os
import re

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import REPO_ROOT, TINY_VAL, tiny_gin_params
from tests.helpers import event_tags, run_script


def _train(model_dir, dataset, *extra, check=True):
    args = ["--gin_file=configs/synthetic.gin", f"--model_dir={model_dir}"]
    args += [f"--gin_param={param}" for param in tiny_gin_params(dataset)] + list(extra)
    return run_script("train.py", *args, check=check, fresh=True)  # The real start-up: what it prints.


def _results(model_dir):
    with open(os.path.join(model_dir, "eval", "results.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def trained(tiny_dataset, tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("run") / "model"
    return model_dir, _train(model_dir, tiny_dataset)


@pytest.mark.slow
def test_train_writes_checkpoint_events_config_and_results(trained):
    model_dir, result = trained
    assert tf.train.latest_checkpoint(str(model_dir)).endswith("model.ckpt-6")
    assert os.path.exists(model_dir / "operative_config-0.gin")
    assert "unet.base_filters = 4" in (model_dir / "operative_config-0.gin").read_text()
    assert os.path.exists(model_dir / "eval" / "operative_config.gin")

    records = _results(model_dir)
    assert [r["global_step"] for r in records] == [3, 6]  # Every 3 steps, and the final one.
    last = records[-1]
    assert last["num_examples"] == TINY_VAL
    assert set(last["per_class"]) == {"background", "circle", "square", "triangle"}
    every_metric = {"mean_iou", "median_iou", "frequency_weighted_iou", "mean_dice", "pixel_accuracy"}
    every_metric |= {"mean_class_accuracy", "average_confidence", "foreground_f1", "loss"}
    assert every_metric <= set(last["metrics"])
    assert set(last["per_class"]["circle"]) == {"iou", "dice", "boundary_iou"}
    confusion = np.array(last["confusion_matrix"])
    assert confusion.shape == (4, 4)
    accuracy = np.trace(confusion) / confusion.sum()
    assert accuracy == pytest.approx(last["metrics"]["pixel_accuracy"], rel=1e-9)

    train_tags = event_tags(model_dir)
    assert "loss" in train_tags and "gin/operative_config" in train_tags
    eval_tags = event_tags(model_dir / "eval")
    for tag in ("mean_iou", "median_iou", "foreground_f1", "average_confidence", "iou/triangle", "dice/circle", "loss"):
        assert eval_tags[tag] == [3, 6], tag

    # Quiet console: a progress line and the results table, no deprecation noise.
    assert "step 6/6" in result.stdout and "steps/s" in result.stdout and "ETA" in result.stdout
    assert "eval @ step 6" in result.stdout and "background" in result.stdout
    assert "deprecat" not in (result.stdout + result.stderr).lower()


@pytest.mark.slow
def test_rerunning_a_finished_job_does_nothing(trained, tiny_dataset):
    model_dir, _ = trained
    before = _results(model_dir)
    result = _train(model_dir, tiny_dataset)
    assert "nothing to do" in result.stdout
    assert _results(model_dir) == before


@pytest.mark.slow
def test_same_command_twice_gives_identical_metrics_and_weights(trained, tiny_dataset, tmp_path):
    model_dir, _ = trained
    _train(tmp_path / "again", tiny_dataset)
    first, second = _results(model_dir)[-1], _results(tmp_path / "again")[-1]
    assert first["metrics"] == second["metrics"]
    assert first["confusion_matrix"] == second["confusion_matrix"]
    reader_a = tf.train.load_checkpoint(str(model_dir))
    reader_b = tf.train.load_checkpoint(str(tmp_path / "again"))
    for name in reader_a.get_variable_to_shape_map():
        np.testing.assert_array_equal(reader_a.get_tensor(name), reader_b.get_tensor(name), err_msg=name)


def test_unknown_gin_binding_fails_before_any_graph(tiny_dataset, tmp_path):
    result = _train(tmp_path / "model", tiny_dataset, "--gin_param=build_model_fn.not_a_parameter = 1", check=False)
    assert result.returncode != 0
    assert "not_a_parameter" in result.stderr
    assert not os.path.exists(tmp_path / "model")


def _documented_tree():
    """`[(regex, optional)]` for the paths in docs/evaluation.md's annotated model directory:
    two spaces of indent per level, the name first; a directory listed without children
    stands for everything in it; "(when" or "(while" in a line marks it optional."""
    text = open(os.path.join(REPO_ROOT, "docs", "evaluation.md")).read()
    block = text.split("## 17. The model directory, annotated", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    entries, parents = [], []
    for line in block.splitlines()[1:]:  # The first line is the directory itself.
        depth = (len(line) - len(line.lstrip())) // 2 - 1
        parents[depth:] = [line.split()[0]]
        entries.append(("".join(parents), "(when" in line or "(while" in line))
    tree = []
    for path, optional in entries:
        if any(other.startswith(path) and other != path for other, _ in entries):
            continue  # A directory whose files are listed.
        regex = re.escape(path).replace("<step>", r"\d+").replace("<timestamp>", r"\d+")
        regex = regex.replace("<name>", r"[\w.-]+").replace(r"\*", r"[^/]*")
        tree.append((re.compile(regex + ".*" if path.endswith("/") else regex), optional))
    return tree


def test_the_annotated_model_directory_in_the_docs_is_what_a_run_leaves(trained):
    model_dir, _ = trained
    documented = _documented_tree()
    real = [
        os.path.relpath(os.path.join(root, name), model_dir) for root, _, files in os.walk(model_dir) for name in files
    ]
    unexplained = [path for path in real if not any(regex.fullmatch(path) for regex, _ in documented)]
    assert not unexplained, f"in the run, not in docs/evaluation.md section 17: {unexplained}"
    missing = [regex.pattern for regex, optional in documented if not optional and not any(map(regex.fullmatch, real))]
    assert not missing, f"in docs/evaluation.md section 17, not in the run: {missing}"
