"""Classification and regression end to end, each from its own gin file: train.py, then
evaluate in every mode (latest, one checkpoint, all checkpoints, continuous, a subset,
worst-k), export a SavedModel and predict with it. Metric values are checked against
scikit-learn on the per-example predictions the evaluation wrote."""

import csv
import os

import gin
import numpy as np
import pytest
import tensorflow as tf
from sklearn import metrics as skm

from core import configurables, results
from data import synthetic, writer
from metrics import bootstrap
from tests.conftest import TINY_SIZE, TINY_TRAIN, TINY_VAL, tiny_gin_params
from tests.helpers import event_tags, run_script
from tools import compare

EXPECTED_METRICS = {
    "classification": {"accuracy", "precision", "recall", "f1", "roc_auc", "average_confidence", "precision_at_2"}
    | {"ece"},
    "regression": {"rmse", "mae", "mape", "r2", "mape_zero_labels"},
}
SCORE = {"classification": "true_class_probability", "regression": "absolute_error"}


def _write(task, root):
    for split, count, shards in (("train", TINY_TRAIN, 3), ("val", TINY_VAL, 2)):
        examples = (synthetic.example(task, 1, split, i, TINY_SIZE, TINY_SIZE) for i in range(count))
        writer.write_shards(examples, count, str(root / split), shards, progress=False)


def _params(task, root):
    return tiny_gin_params(root) + ["SUMMARY_INDICES = [0, 5]"]


@pytest.fixture(scope="module", params=["classification", "regression"])
def trained(request, tmp_path_factory):
    task = request.param
    root = tmp_path_factory.mktemp(task)
    _write(task, root)
    model_dir = root / "model"
    args = [f"--gin_file=configs/{task}.gin", f"--model_dir={model_dir}"]
    args += [f"--gin_param={p}" for p in _params(task, root)]
    result = run_script("train.py", *args)
    return task, root, model_dir, result


def _evaluate(task, root, model_dir, **kwargs):
    """evaluate.py's root, in-process (the flags become these keyword arguments)."""
    gin.clear_config()
    try:
        configurables.parse_gin([f"configs/{task}.gin"], _params(task, root))
        return configurables.evaluate(model_dir=str(model_dir), **kwargs)
    finally:
        gin.clear_config()


@pytest.mark.slow
def test_training_reports_the_tasks_own_metrics(trained):
    task, _, model_dir, result = trained
    records = results.read_records(str(model_dir / "eval"))
    assert [r["global_step"] for r in records] == [3, 6]
    last = records[-1]
    assert last["num_examples"] == TINY_VAL
    assert EXPECTED_METRICS[task] <= set(last["metrics"]), set(last["metrics"])
    assert "mean_iou" not in last["metrics"] and "mean_iou" not in result.stdout
    headline = "accuracy" if task == "classification" else "rmse"
    assert "done in" in result.stdout and f", {headline} " in result.stdout
    best = results_best = (model_dir / "best.json").read_text()
    assert f'"metric": "{headline}"' in results_best
    if task == "classification":
        assert set(last["per_class"]) == {"circle", "square", "triangle"}
        assert set(last["per_class"]["square"]) == {"precision", "recall", "f1", "roc_auc"}
        confusion = np.array(last["confusion_matrix"])
        assert confusion.shape == (3, 3) and confusion.sum() == TINY_VAL
        assert last["metrics"]["accuracy"] == pytest.approx(np.trace(confusion) / TINY_VAL)
    else:  # Lower is better: best.json holds the lowest RMSE seen.
        assert '"value": ' + repr(min(r["metrics"]["rmse"] for r in records)) in best
    tags = event_tags(model_dir / "eval")
    assert tags["images/index_00000/0"] == [3, 6] and tags["images/index_00005/0"] == [3, 6]
    # The per-example statistics give the streaming headline exactly, and its interval.
    kept = results.read_statistics(str(model_dir / "eval" / "statistics-6.npz"))
    task_object = compare.load(str(model_dir / "eval"))["task_object"]
    whole = task_object.from_sums(bootstrap.totals(kept["statistics"]))
    assert whole[headline][0] == pytest.approx(last["metrics"][headline], rel=1e-9)
    interval = last["ci"][headline]
    assert interval["low"] <= last["metrics"][headline] <= interval["high"]


def _per_example(path):
    with open(path) as f:
        f.readline()
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_metrics_match_scikit_learn_on_the_written_predictions(trained):
    task, _, model_dir, _ = trained
    record = results.read_records(str(model_dir / "eval"))[-1]
    rows = _per_example(model_dir / "eval" / "per_example-6.csv")
    assert sorted(int(row["index"]) for row in rows) == list(range(TINY_VAL))
    scores = [float(row[SCORE[task]]) for row in rows]
    assert scores == sorted(scores, reverse=task == "regression")  # Worst first.
    if task == "classification":
        labels = [int(float(row["label"])) for row in rows]
        predicted = [int(float(row["predicted"])) for row in rows]
        assert record["metrics"]["accuracy"] == pytest.approx(skm.accuracy_score(labels, predicted))
    else:
        truth = [float(row["coverage_target"]) for row in rows]
        predicted = [float(row["coverage_predicted"]) for row in rows]
        expected_rmse = np.sqrt(skm.mean_squared_error(truth, predicted))
        assert record["metrics"]["rmse"] == pytest.approx(expected_rmse, rel=1e-5)
        assert record["metrics"]["r2"] == pytest.approx(skm.r2_score(truth, predicted), rel=1e-4, abs=1e-6)


@pytest.mark.slow
def test_evaluate_in_every_mode(trained):
    task, root, model_dir, _ = trained
    latest = _evaluate(task, root, model_dir, eval_name="again")
    assert latest[-1]["metrics"] == results.read_records(str(model_dir / "eval"))[-1]["metrics"]
    one = _evaluate(task, root, model_dir, checkpoint=str(model_dir / "model.ckpt-3"), eval_name="three")
    assert one[-1]["global_step"] == 3
    backfill = _evaluate(task, root, model_dir, all_checkpoints=True, eval_name="backfill")
    assert [r["global_step"] for r in backfill] == [0, 3, 6]
    continuous = _evaluate(task, root, model_dir, continuous=True, timeout_secs=30, eval_name="watch")
    assert [r["global_step"] for r in continuous] == [6]
    subset = _evaluate(task, root, model_dir, subset="6,1,4", eval_name="pick")
    assert subset[-1]["num_examples"] == 3
    panels = {tag for tag in event_tags(model_dir / "eval_pick") if tag.startswith("images/")}
    assert panels == {f"images/index_{i:05d}/0" for i in (1, 4, 6)}
    rows = _per_example(model_dir / "eval" / "per_example-6.csv")
    worst = sorted(int(row["index"]) for row in rows[:2])
    worst_records = _evaluate(task, root, model_dir, worst_k=2)
    assert worst_records[-1]["num_examples"] == 2
    panels = {tag for tag in event_tags(model_dir / "eval_worst_2") if tag.startswith("images/")}
    assert panels == {f"images/index_{i:05d}/0" for i in worst}


@pytest.mark.slow
def test_export_and_predict(trained, tmp_path, capsys):
    """tools/export.py's and tools/predict.py's functions, in-process: their command lines
    run for real in tests/test_export_predict.py; here, each task's serving signature."""
    from tools import export, predict

    task, root, model_dir, _ = trained
    gin.clear_config()
    try:
        configurables.parse_gin([f"configs/{task}.gin"], _params(task, root))
        saved_model = export.export(str(model_dir), str(tmp_path / "export"))
    finally:
        gin.clear_config()
    signature = tf.saved_model.load(saved_model).signatures["serving_default"]
    images = np.stack([synthetic.example(task, 1, "val", i, TINY_SIZE, TINY_SIZE)["image"] for i in range(3)])
    outputs = {key: value.numpy() for key, value in signature(image=tf.constant(images)).items()}
    if task == "classification":
        assert outputs["classes"].shape == (3,) and outputs["probabilities"].shape == (3, 3)
    else:
        assert outputs["predictions"].shape == (3, 1)
    paths = []
    for i, image in enumerate(images):
        paths.append(str(tmp_path / f"val_{i}.png"))
        tf.io.write_file(paths[-1], tf.io.encode_png(image))
    names = ",".join(synthetic.label_names(task))
    capsys.readouterr()
    predict.predict(saved_model, paths, str(tmp_path / "out"), names.split(","))
    stdout = capsys.readouterr().out
    with open(tmp_path / "out" / "predictions.csv") as f:
        table = list(csv.DictReader(f))
    assert [row["image"] for row in table] == paths and len(stdout.strip().splitlines()) == 4
    if task == "classification":
        np.testing.assert_array_equal([int(row["class"]) for row in table], outputs["classes"])
    else:
        np.testing.assert_allclose([float(row["coverage"]) for row in table], outputs["predictions"][:, 0], rtol=1e-5)
    assert os.path.exists(saved_model)
