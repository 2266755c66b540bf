"""Several evaluation sets in one run (gin's EVAL_SETS, docs/evaluation.md section 20): each
set evaluated at every checkpoint into its own eval_<set>/, the best checkpoint and early
stopping following the set BEST_SET names, evaluate.py --eval_set, the TF_CONFIG evaluator,
a run resumed between two sets' evaluations. One tiny training run, in-process."""

import json
import os
import shutil

import pytest

from common.errors import ConfigError
from core import eval_sets, results
from tests.conftest import REPO_ROOT, TINY_TRAIN, TINY_VAL, tiny_gin_params
from tests.helpers import event_tags, run_in_process

SETS = "{'val': %VAL_FILES, 'seen': {'files': %TRAIN_FILES, 'slice_by': ['size']}, 'few': {'files': %VAL_FILES, 'subset': [0, 2, 4]}}"  # noqa: E501


def _args(dataset, model_dir, **overrides):
    params = tiny_gin_params(dataset, TRAIN_STEPS=8, EVAL_EVERY_STEPS=2, **overrides)
    return ["--gin_file=configs/synthetic.gin", f"--model_dir={model_dir}", *[f"--gin_param={p}" for p in params]]


def _steps(eval_dir):
    return [record["global_step"] for record in results.read_records(str(eval_dir))]


@pytest.fixture(scope="module")
def run(tiny_dataset, tmp_path_factory):
    """Three sets; `seen` (the training files, 12 examples) is followed, on `num_examples` with
    early stopping after one evaluation without a rise: a metric that never rises, so the run
    stops early if and only if early stopping reads a set's evaluations (there is no eval/),
    and the best checkpoint's value says which set it was read on (12 examples, not 7 or 3)."""
    model_dir = tmp_path_factory.mktemp("sets") / "run"
    args = _args(tiny_dataset, model_dir, EVAL_SETS=SETS, BEST_SET="'seen'", BEST_METRIC="'num_examples'",
                 HIGHER_IS_BETTER=True, **{"best_checkpoint.early_stopping_evals": 1})  # fmt: skip
    result = run_in_process("train.py", *args)
    return model_dir, args, result


def test_each_set_is_evaluated_at_every_checkpoint_into_its_own_directory(run):
    model_dir, _, result = run
    assert not (model_dir / "eval").exists()
    steps = _steps(model_dir / "eval_seen")
    assert steps and steps == _steps(model_dir / "eval_val") == _steps(model_dir / "eval_few")
    for name, count in (("val", TINY_VAL), ("seen", TINY_TRAIN), ("few", 3)):
        eval_dir = model_dir / f"eval_{name}"
        records = results.read_records(str(eval_dir))
        assert {record["num_examples"] for record in records} == {count}, name
        assert all(os.path.exists(results.statistics_path(str(eval_dir), step)) for step in steps)
        assert sorted(set(event_tags(str(eval_dir))["mean_iou"])) == steps  # Its own TensorBoard run.
        # Its own slices: `seen` has SLICE_BY of its own, the others gin's (none).
        assert all(("slices" in record) == (name == "seen") for record in records)
    few = results.read_statistics(results.statistics_path(str(model_dir / "eval_few"), steps[-1]))
    assert few["index"].tolist() == [0, 2, 4]
    assert f"results in {model_dir / 'eval_val'}" in result.stdout


def test_the_best_checkpoint_and_early_stopping_follow_the_named_set(run):
    model_dir, _, _ = run
    steps = _steps(model_dir / "eval_seen")
    assert steps[0] == 2 and steps[-1] < 8  # Stopped early: it read evaluations that did not rise.
    best = json.loads((model_dir / "best.json").read_text())
    assert (best["eval_dir"], best["global_step"], best["value"]) == ("eval_seen", 2, TINY_TRAIN)


def test_a_finished_run_prints_each_set_and_a_resumed_one_evaluates_the_set_it_missed(run, tmp_path):
    model_dir, args, _ = run
    copy = tmp_path / "copy"
    shutil.copytree(model_dir, copy)
    args = [f"--model_dir={copy}" if arg.startswith("--model_dir=") else arg for arg in args]
    # Stopped between two sets' evaluations of the last checkpoint: `few` lacks it.
    lines = (copy / "eval_few" / "results.jsonl").read_text().splitlines()
    (copy / "eval_few" / "results.jsonl").write_text("".join(line + "\n" for line in lines[:-1]))
    val_before = (copy / "eval_val" / "results.jsonl").read_text()
    result = run_in_process("train.py", *args)
    assert "nothing to do" in result.stdout
    assert all(f"eval_{name}:" in result.stdout for name in ("seen", "val", "few"))
    assert _steps(copy / "eval_few") == _steps(copy / "eval_seen")
    assert (copy / "eval_val" / "results.jsonl").read_text() == val_before  # Not evaluated again.


def test_evaluate_py_takes_a_set_by_name(run, tmp_path):
    model_dir, args, _ = run
    last = _steps(model_dir / "eval_val")[-1]
    copy = tmp_path / "copy"
    shutil.copytree(model_dir, copy)
    args = [f"--model_dir={copy}" if arg.startswith("--model_dir=") else arg for arg in args]
    shutil.rmtree(copy / "eval_seen")
    run_in_process("evaluate.py", *args, "--eval_set=seen")
    record = results.read_records(str(copy / "eval_seen"))[-1]
    assert (record["global_step"], record["num_examples"], "slices" in record) == (last, TINY_TRAIN, True)
    shutil.rmtree(copy / "eval_val")
    run_in_process("evaluate.py", *args)  # No --eval_set: the first set, into its directory.
    assert _steps(copy / "eval_val") == [last] and not (copy / "eval").exists()
    result = run_in_process("evaluate.py", *args, "--eval_set=seen", "--eval_name=val", check=False)
    assert result.stderr.strip().splitlines()[-1] == (
        "error: --eval_name=val is the eval directory of evaluation set 'val': use --eval_set=val, or another name"
    )
    run_in_process("evaluate.py", *args, "--eval_set=val", "--subset=1,3")
    assert [d for d in os.listdir(copy) if d.startswith("eval_val_subset_2_")]
    result = run_in_process("evaluate.py", *args, "--eval_set=nope", check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == "error: --eval_set=nope: not one of EVAL_SETS (val, seen, few)"


def test_the_tf_config_evaluator_evaluates_every_set(run, tmp_path, monkeypatch):
    model_dir, args, _ = run
    copy = tmp_path / "copy"
    shutil.copytree(model_dir, copy)
    args = [f"--model_dir={copy}" if arg.startswith("--model_dir=") else arg for arg in args]
    for name in ("seen", "few"):
        shutil.rmtree(copy / f"eval_{name}")
    # An evaluator restarted after it evaluated `val` at the final step, before the others.
    final = _steps(model_dir / "eval_seen")[-1]
    val = copy / "eval_val" / "results.jsonl"
    val.write_text(
        next(line for line in val.read_text().splitlines() if json.loads(line)["global_step"] == final) + "\n"
    )
    val_before = val.read_text()
    spec = {"chief": ["localhost:2222"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": spec, "task": {"type": "evaluator", "index": 0}}))
    run_in_process("train.py", *args)
    for name in ("val", "seen", "few"):
        assert _steps(copy / f"eval_{name}") == [final], name
    assert val.read_text() == val_before  # Not evaluated again.
    assert "nothing to do" in run_in_process("train.py", *args).stdout  # Run again: every set has it.


@pytest.mark.parametrize(
    "sets, message",
    [
        ("['a']", "EVAL_SETS must be a dict"),
        ({"bad name": "x"}, "'bad name' is not a set name"),
        ({"a": {"subset": [1]}}, "EVAL_SETS['a']: give a file pattern"),
        ({"a": {"files": "x", "slices": []}}, "unknown key(s) slices"),
        ({"a": {"files": "x", "slice_by": "size"}}, "EVAL_SETS['a']: slice_by must be a list"),
        ({"worst_8": "x"}, "'worst_8' starts like evaluate.py's own eval directories"),
    ],
)
def test_a_bad_eval_set_is_one_line_naming_it(sets, message):
    with pytest.raises(ConfigError) as error:
        eval_sets.parse_eval_sets(sets)
    assert message in str(error.value)


def test_best_set_must_be_one_of_the_sets():
    sets = [eval_sets.EvalSet("val", None), eval_sets.EvalSet("test", None)]
    assert eval_sets.followed_set(sets).name == "val"
    assert eval_sets.followed_set(sets, "test").name == "test"
    with pytest.raises(ConfigError, match=r"BEST_SET 'tset' is not one of EVAL_SETS \(there are: 'val', 'test'\)"):
        eval_sets.followed_set(sets, "tset")
    with pytest.raises(ConfigError, match="BEST_SET 'val' needs EVAL_SETS"):
        eval_sets.followed_set([eval_sets.EvalSet(None, None)], "val")
    assert eval_sets.parse_eval_sets({}) == {} and eval_sets.parse_eval_sets(None) == {}
    assert eval_sets.parse_eval_sets({"a": "x*"}) == {"a": {"files": "x*", "subset": None, "slice_by": None}}


@pytest.mark.parametrize("checkpoint_kept", [True, False])
def test_a_changed_best_set_rechooses_best_from_its_own_results(tmp_path, checkpoint_kept, capsys):
    """best.json chosen on eval/ (before EVAL_SETS), the run now following eval_val: best/
    takes eval_val's best step from its results if that checkpoint still exists; else the
    best is unset and the next evaluation becomes it. Never the old choice's checkpoint."""
    from core.best import BEST_FILE, BestCheckpointKeeper, keep_checkpoint

    def checkpoint(step):
        path = tmp_path / f"model.ckpt-{step}"
        for suffix in (".index", ".data-00000-of-00001"):
            (tmp_path / (path.name + suffix)).write_bytes(b"x")
        return str(path)

    keep_checkpoint(str(tmp_path), checkpoint(2), "mean_iou", 0.9, 2)  # Written as before: eval/.
    for step, value in ((2, 0.5), (4, 0.7)):
        results.append_record(str(tmp_path / "eval_val"), {"global_step": step, "checkpoint": checkpoint(step),
                                                              "metrics": {"mean_iou": value}})  # fmt: skip
    if not checkpoint_kept:
        os.remove(tmp_path / "model.ckpt-4.index")
    keeper = BestCheckpointKeeper(str(tmp_path), "mean_iou", True, eval_dir=str(tmp_path / "eval_val"))
    keeper.export(None, None, checkpoint(6), {"mean_iou": 0.6, "global_step": 6}, False)
    best = json.loads((tmp_path / BEST_FILE).read_text())
    expected_step = 4 if checkpoint_kept else 6
    assert (best["global_step"], best["eval_dir"]) == (expected_step, "eval_val")
    assert os.path.exists(tmp_path / "best" / f"model.ckpt-{expected_step}.index")
    assert "best: was by mean_iou on eval, now by mean_iou on eval_val" in capsys.readouterr().out


def test_the_cluster_launcher_and_compare_s_panels_know_the_sets(tmp_path):
    """tools/launch_local_cluster.py judges every set's results (there is no eval/), and
    tools/compare.py's panel commands evaluate the compared set's own examples."""
    import gin

    from core import configurables
    from tools import compare
    from tools import launch_local_cluster as launcher

    for name in ("val", "seen"):
        (tmp_path / f"eval_{name}").mkdir()
        (tmp_path / f"eval_{name}" / "results.jsonl").write_text("{}")
    assert launcher._results_files(str(tmp_path)) == [
        str(tmp_path / "eval_seen" / "results.jsonl"),
        str(tmp_path / "eval_val" / "results.jsonl"),
    ]
    kept = {"path": str(tmp_path / "eval_seen" / "statistics-6.npz"), "checkpoint": "ckpt-6"}
    gin.clear_config()
    try:
        configurables.parse_gin([os.path.join(REPO_ROOT, "configs", "synthetic.gin")], [f"EVAL_SETS = {SETS}"])
        commands = compare.panel_commands(kept, kept, [1, 2], ["configs/synthetic.gin"])
    finally:
        gin.clear_config()
    assert all("--eval_set=seen" in command for command in commands)
    assert not any("--eval_set" in arg for command in compare.panel_commands(kept, kept, [1]) for arg in command)
