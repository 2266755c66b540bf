"""Sliced metrics (metrics/slices.py, tools/slices.py), slice-by-slice comparison
(tools/compare.py --slice_by) and the gates (tools/validate.py), against references computed
from the pixels: images of different sizes, ignored pixels, absent classes, a small slice."""

import json
import os

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix

from common.errors import ConfigError, EvaluationError
from core import results
from metrics import slices
from models.classification import Classification
from models.segmentation import Segmentation
from tools import compare, validate
from tools import slices as slices_tool

NAMES = ["background", "road", "car"]
IGNORE = 255


def _pixels(rng, count, flip=0.15):
    """Label and prediction maps of different sizes, with ignored pixels and, in some
    examples, no car at all; file names `camA_*`, `camB_*` and one odd one."""
    examples = []
    for i in range(count):
        height, width = (rng.integers(20, 90), rng.integers(20, 90)) if i % 3 else (rng.integers(200, 300), 150)
        labels = rng.integers(0, 2 if i % 4 == 0 else 3, (height, width))
        labels[rng.random((height, width)) < 0.1] = IGNORE
        noise = rng.random((height, width)) < flip
        predictions = np.where(noise, rng.integers(0, 3, (height, width)), np.where(labels == IGNORE, 0, labels))
        name = "odd.png" if i == 5 else f"cam{'AB'[i % 2]}_{i:03d}.png"
        examples.append((name, labels, predictions))
    return examples


def _confusion(labels, predictions):
    valid = labels != IGNORE
    return confusion_matrix(labels[valid], predictions[valid], labels=range(len(NAMES)))


def _reference_mean_iou(examples):
    """Mean IoU over the classes present in the pooled labels or predictions: scikit-learn's
    confusion matrix of every non-ignored pixel of these examples together."""
    labels = np.concatenate([e[1].ravel() for e in examples])
    predictions = np.concatenate([e[2].ravel() for e in examples])
    matrix = _confusion(labels, predictions).astype(np.float64)
    union = matrix.sum(0) + matrix.sum(1) - np.diag(matrix)
    return np.mean(np.diag(matrix)[union > 0] / union[union > 0])


def _write(eval_dir, step, examples, task=None):
    os.makedirs(eval_dir, exist_ok=True)
    confusion = np.stack([_confusion(labels, predictions).ravel() for _, labels, predictions in examples])
    index = np.arange(len(examples))[::-1]  # Evaluation order is not index order.
    by_index = {int(i): (examples[i][0], *examples[i][1].shape) for i in index}
    results.write_statistics(str(eval_dir), step, f"model.ckpt-{step}", index, {"confusion": confusion[index]},
                             task or Segmentation(3, NAMES), by_index)  # fmt: skip
    return results.statistics_path(str(eval_dir), step)


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory):
    examples = _pixels(np.random.default_rng(0), 90)
    path = _write(str(tmp_path_factory.mktemp("slices") / "eval"), 100, examples)
    return examples, compare.load(os.path.dirname(path))


def _sliced(kept, *specs, metadata=None, min_size=5):
    return results.compute_slices(kept, kept["task_object"], slices.Slicing(specs, metadata, min_size))


def test_each_slice_equals_the_pixels_of_its_examples_and_a_partition_sums_to_the_whole(evaluation):
    examples, kept = evaluation
    found = _sliced(kept, "size", "file:^(cam\\w)_", "class")
    sides = [max(labels.shape) for _, labels, _ in examples]
    expected = {
        "size:<128": [e for e, side in zip(examples, sides) if side < 128],
        "size:256-511": [e for e, side in zip(examples, sides) if 256 <= side < 512],
        "size:128-255": [e for e, side in zip(examples, sides) if 128 <= side < 256],
        "file:camA": [e for e in examples if e[0].startswith("camA")],
        "file:camB": [e for e in examples if e[0].startswith("camB")],
        "file:(no match)": [e for e in examples if e[0] == "odd.png"],  # Not dropped: a slice of its own.
        "class:car": [e for e in examples if np.any(e[1] == 2)],
    }
    for name, members in expected.items():
        if not members:
            assert name not in found, name
            continue
        assert found[name]["num_examples"] == len(members), name
        if len(members) < 5:
            assert found[name]["too_small"] and "metrics" not in found[name] and "ci" not in found[name], name
            continue
        assert found[name]["metrics"]["mean_iou"] == pytest.approx(_reference_mean_iou(members), abs=1e-12), name
        interval = found[name]["ci"]["mean_iou"]
        assert interval["low"] <= found[name]["metrics"]["mean_iou"] <= interval["high"], name
    whole = sum(_confusion(labels, predictions) for _, labels, predictions in examples).ravel()
    for prefix in ("size:", "file:"):  # Each is a partition: its slices' sums are the whole set's.
        parts = [value for name, value in found.items() if name.startswith(prefix)]
        assert sum(value["num_examples"] for value in parts) == len(examples)
        assert np.array_equal(np.sum([value["sums"]["confusion"] for value in parts], axis=0), whole)
    assert found["class:background"]["num_examples"] == len(examples)


def test_area_slices_bucket_each_class_by_its_share_of_the_labelled_pixels(evaluation):
    examples, kept = evaluation
    found = _sliced(kept, "area", min_size=1)
    for k, name in enumerate(NAMES):
        shares = []
        for _, labels, _ in examples:
            valid = labels != IGNORE
            if np.any(labels[valid] == k):
                shares.append(np.mean(labels[valid] == k))
        counted = sum(found.get(f"area:{name}:{bucket}", {"num_examples": 0})["num_examples"]
                      for bucket in ("<1%", "1-10%", ">10%"))  # fmt: skip
        assert counted == len(shares), name
        assert found.get(f"area:{name}:>10%", {"num_examples": 0})["num_examples"] == sum(s > 0.1 for s in shares)


def test_metadata_columns_and_crosses(evaluation, tmp_path):
    examples, kept = evaluation
    table = tmp_path / "meta.csv"
    rows = [f"{name},{'night' if i % 5 == 0 else 'day'}" for i, (name, _, _) in enumerate(examples)]
    table.write_text("file,light\n" + "\n".join(rows) + "\n")
    found = _sliced(kept, "light", "light*file:^(cam\\w)_", metadata=str(table), min_size=1)
    night = [e for i, e in enumerate(examples) if i % 5 == 0]
    assert found["light:night"]["metrics"]["mean_iou"] == pytest.approx(_reference_mean_iou(night), abs=1e-12)
    crossed = [e for i, e in enumerate(examples) if i % 5 and e[0].startswith("camA")]
    assert found["light:day & file:camA"]["num_examples"] == len(crossed)
    table.write_text("file,light\n" + "\n".join(rows[1:]) + "\n")
    with pytest.raises(EvaluationError, match=f"no row for '{examples[0][0]}'"):
        _sliced(kept, "light", metadata=str(table))
    with pytest.raises(ConfigError, match="no such column"):
        _sliced(kept, "weather", metadata=str(table.parent / "meta.csv"))
    with pytest.raises(ConfigError, match="no --slice_metadata"):
        _sliced(kept, "light")
    with pytest.raises(ConfigError, match="bad regular expression"):
        slices.Slicing(["file:(unclosed"])


def test_classification_slices_by_class_and_refuses_area(tmp_path):
    labels = np.array([0, 0, 1, 1, 2, 2, 2, 0])
    predicted = np.array([0, 1, 1, 1, 2, 0, 2, 0])
    task = Classification(3, ["a", "b", "c"])
    confusion = np.eye(9)[labels * 3 + predicted]
    results.write_statistics(str(tmp_path), 7, "ckpt", np.arange(8), {"confusion": confusion}, task,
                             {i: (f"{i}.png", 10, 10) for i in range(8)})  # fmt: skip
    kept = compare.load(str(tmp_path))
    found = _sliced(kept, "class", min_size=1)
    for k, name in enumerate("abc"):
        assert found[f"class:{name}"]["metrics"]["accuracy"] == pytest.approx(np.mean(predicted[labels == k] == k))
    with pytest.raises(EvaluationError, match="not per pixel"):
        _sliced(kept, "area")


def test_tools_slices_prints_worst_first_and_json(evaluation, capsys):
    _, kept = evaluation
    assert slices_tool.main([kept["path"].rsplit("/", 1)[0], "--slice_by=file:^(cam\\w)_", "--min_slice_size=5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line.split() for line in lines if line.strip().startswith("file:")]
    values = [float(row[2]) for row in rows if row[2] != "too"]
    assert values == sorted(values) and rows[-1][-1] == "small"  # Worst first, too small last.
    assert slices_tool.main([kept["path"].rsplit("/", 1)[0], "--slice_by=size", "--json"]) == 0
    sides = [max(labels.shape) for _, labels, _ in evaluation[0]]
    expected = {"size:<128": sum(s < 128 for s in sides), "size:128-255": sum(128 <= s < 256 for s in sides)}
    expected["size:256-511"] = sum(256 <= s < 512 for s in sides)
    assert all(expected.values())  # The data spans three buckets.
    found = json.loads(capsys.readouterr().out)
    assert {name: value["num_examples"] for name, value in found.items()} == expected
    assert slices_tool.main([kept["path"].rsplit("/", 1)[0], "--slice_by=a*b*c"]) == 1


def _worse(examples, rng, cars_missed):
    """The same examples, predicted worse: `cars_missed` of each car pixel called road."""
    out = []
    for name, labels, predictions in examples:
        predictions = predictions.copy()
        predictions[(labels == 2) & (rng.random(labels.shape) < cars_missed)] = 1
        out.append((name, labels, predictions))
    return out


def test_compare_slice_by_slice(evaluation, tmp_path, capsys):
    examples, kept = evaluation
    _write(str(tmp_path / "eval"), 200, _worse(examples, np.random.default_rng(1), 0.3))
    assert compare.main([kept["path"].rsplit("/", 1)[0], str(tmp_path / "eval"), "--slice_by=class", "--top=0"]) == 0
    out = capsys.readouterr().out
    assert "slices, mean_iou (paired):" in out
    car = next(line for line in out.splitlines() if line.strip().startswith("class:car"))
    assert car.rstrip().endswith("B worse")


def test_gates_bless_or_not_and_say_which_threshold_failed(evaluation, tmp_path, capsys):
    examples, kept = evaluation
    eval_a = kept["path"].rsplit("/", 1)[0]
    value = kept["task_object"].from_sums(results.bootstrap.totals(kept["statistics"]))["mean_iou"][0]
    export = tmp_path / "export"
    export.mkdir()
    assert validate.main([eval_a, f"--require=mean_iou >= {value - 0.01:.4f}", f"--export_dir={export}"]) == 0
    assert capsys.readouterr().out.strip().endswith("BLESSED")
    assert os.path.exists(export / "BLESSED") and json.loads((export / "blessing.json").read_text())["blessed"]
    assert validate.main([eval_a, f"--require=mean_iou >= {value + 0.01:.4f}", f"--export_dir={export}"]) == 1
    out = capsys.readouterr().out
    assert f"FAIL  require mean_iou >= {value + 0.01:.4f}" in out and "NOT BLESSED" in out
    assert os.path.exists(export / "NOT_BLESSED") and not os.path.exists(export / "BLESSED")
    verdict = json.loads(open(os.path.join(eval_a, "blessing-100.json")).read())
    assert verdict["blessed"] is False and verdict["checks"][0]["passed"] is False
    # Slices: the worst camera fails a threshold the whole set passes; a small slice is not judged.
    found = _sliced(kept, "file:^(cam\\w)_")
    worst = min(v["metrics"]["mean_iou"] for v in found.values() if not v.get("too_small"))
    argv = [
        eval_a,
        "--slice_by=file:^(cam\\w)_",
        "--min_slice_size=5",
        f"--require=slice:file:* mean_iou >= {worst + 1e-6}",
    ]
    assert validate.main(argv) == 1
    out = capsys.readouterr().out
    assert out.count("FAIL") == 1 and "SKIP" in out and "(no match)" in out
    assert validate.main([eval_a, "--require=mean_iou >> 1"]) == 2
    assert "error:" in capsys.readouterr().err


def test_a_change_gate_is_judged_on_the_paired_interval_not_the_point_values(evaluation, tmp_path, capsys):
    examples, kept = evaluation
    eval_a = kept["path"].rsplit("/", 1)[0]
    _write(str(tmp_path / "eval"), 300, _worse(examples, np.random.default_rng(2), 0.05))
    candidate = compare.load(str(tmp_path / "eval"))
    change = compare.compare(kept, candidate)["mean_iou"]
    assert change["difference"] < 0 and change["low"] < change["difference"]
    # A margin the point drop respects but the interval does not: not blessed.
    margin = (-change["difference"] - change["low"]) / 2
    assert -change["difference"] < margin < -change["low"]
    argv = [str(tmp_path / "eval"), f"--baseline={eval_a}", f"--max_drop=mean_iou {margin:.6f}"]
    assert validate.main(argv) == 1
    assert "FAIL  max_drop" in capsys.readouterr().out
    argv[-1] = f"--max_drop=mean_iou {-change['low'] + 1e-4:.6f}"
    assert validate.main(argv) == 0
    assert validate.main([str(tmp_path / "eval"), "--max_drop=mean_iou 0.1"]) == 2  # No baseline: cannot judge.


def test_a_training_run_refuses_a_bad_slice_before_it_trains(tiny_dataset, tmp_path):
    """A slice that would fail at the first evaluation fails first, with nothing written."""
    from tests.conftest import tiny_gin_params
    from tests.helpers import run_in_process

    model_dir = tmp_path / "run"
    table = tmp_path / "meta.csv"
    table.write_text("file,light\nval_0.png,day\n")  # Six of the seven val files have no row.
    params = [*tiny_gin_params(tiny_dataset), "SLICE_BY = ['light']", f"slicing.metadata = '{table}'"]
    args = ["--gin_file=configs/synthetic.gin", f"--model_dir={model_dir}"]
    result = run_in_process("train.py", *args, *[f"--gin_param={p}" for p in params], check=False)
    assert result.returncode == 1
    assert (
        result.stderr.strip().splitlines()[-1]
        == "error: slice 'light': the metadata CSV has no row for 'val_1.png' (and 5 more)"
    )
    assert not model_dir.exists()
    params[-2] = "SLICE_BY = ['size', 'class']"
    result = run_in_process("train.py", *args, *[f"--gin_param={p}" for p in params[:-1]])
    record = [json.loads(line) for line in open(model_dir / "eval" / "results.jsonl")][-1]
    assert record["slices"]["size:<128"]["num_examples"] == record["num_examples"] == 7
    assert "slices by mean_iou, worst first" in result.stdout


def test_write_statistics_returns_what_reading_the_file_gives(tmp_path):
    """results.report slices the statistics it has just written without reading them back."""
    task = Classification(3, ["a", "b", "c"])
    confusion = np.eye(9)[[0, 4, 8, 1, 3]] * 1.0
    path, written = results.write_statistics(str(tmp_path), 3, "ckpt", np.array([4, 2, 0, 1, 3]),
                                             {"confusion": confusion}, task,
                                             {i: (f"{i}.png", 5 + i, 7) for i in range(5)})  # fmt: skip
    read = results.read_statistics(path)
    assert written.keys() == read.keys()
    for key in ("checkpoint", "task", "class_names", "filenames"):
        assert written[key] == read[key]
    for key in ("index", "image_sizes"):
        np.testing.assert_array_equal(written[key], read[key])
        assert written[key].dtype == read[key].dtype
    assert written["statistics"].keys() == read["statistics"].keys()
    np.testing.assert_array_equal(written["statistics"]["confusion"], read["statistics"]["confusion"])
    assert written["statistics"]["confusion"].dtype == read["statistics"]["confusion"].dtype
