"""State files (common/files.py, core/results.py): written atomically, and a torn one is
moved aside with one line, its whole part kept, never fatal."""

import json
import os

import numpy as np
import pytest

from common import files
from common.errors import EvaluationError
from core import results


def test_write_atomic_replaces_whole_and_leaves_nothing_when_it_fails(tmp_path, monkeypatch):
    path = tmp_path / "state.json"
    files.write_atomic(str(path), '{"a": 1}')
    assert json.loads(path.read_text()) == {"a": 1}

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        files.write_atomic(str(path), '{"a": 2}')
    assert json.loads(path.read_text()) == {"a": 1}  # The old file, whole.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]  # No temporary file left.


def test_a_torn_json_file_is_moved_aside_with_one_line(tmp_path):
    path = tmp_path / "best.json"
    path.write_text('{"global_step": 4, "val')
    lines = []
    assert files.read_json(str(path), lines.append) is None
    assert not path.exists()
    (aside,) = (tmp_path / "torn").iterdir()
    assert aside.read_text() == '{"global_step": 4, "val'
    assert len(lines) == 1 and lines[0].startswith(f"{path} is torn (not JSON: ") and str(aside) in lines[0]


def test_a_torn_results_line_is_set_aside_and_the_next_record_lands_on_a_whole_file(tmp_path):
    eval_dir = str(tmp_path)
    for step in (2, 4):
        results.append_record(eval_dir, {"global_step": step, "metrics": {"m": step / 10}})
    path = tmp_path / results.RESULTS_FILE
    path.write_text(path.read_text()[:-9])  # The last line cut short: 827 of 1,636 bytes.
    lines = []
    results.append_record(eval_dir, {"global_step": 6, "metrics": {"m": 0.6}}, lines.append)
    assert [r["global_step"] for r in results.read_records(eval_dir)] == [2, 6]
    assert len(lines) == 1 and "1 unreadable line(s); kept its 1 whole record(s)" in lines[0]
    # The same step evaluated again replaces its line: no duplicate steps.
    results.append_record(eval_dir, {"global_step": 6, "metrics": {"m": 0.7}}, lines.append)
    assert [(r["global_step"], r["metrics"]["m"]) for r in results.read_records(eval_dir)] == [(2, 0.2), (6, 0.7)]


def test_a_torn_statistics_file_is_one_line_naming_it(tmp_path):
    path = tmp_path / "statistics-4.npz"
    np.savez_compressed(path, index=np.arange(3))
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(EvaluationError, match=rf"^{path} is not a readable statistics file \("):
        results.read_statistics(str(path))


def test_a_statistics_file_never_runs_code(tmp_path, capsys):
    """The task a statistics file names is looked up among the registered tasks; a crafted
    name (here Python's print) is refused in one line, and nothing is imported or called."""
    crafted = {"task": "builtins:print", "class_names": ["called"]}
    with pytest.raises(EvaluationError, match=r"^f.npz was written by the task 'builtins:print', which is not known"):
        results.task_of(crafted, "f.npz")
    assert capsys.readouterr().out == ""
    shipped = results.task_of({"task": "models.tasks:Segmentation", "class_names": ["a", "b"]})  # Written before names.
    assert shipped.name == "segmentation" and shipped.class_names == ["a", "b"]


def test_a_failed_write_leaves_no_shard_and_no_staging_folder(tmp_path):
    from common.errors import DataError
    from data import synthetic, writer

    def examples():
        for i in range(3):
            yield {**synthetic.example("segmentation", 1, "train", i, 16, 16), "filename": f"{i}.png"}
        raise DataError("the fourth image is unreadable")

    with pytest.raises(DataError, match="fourth"):
        writer.write_shards(examples(), 4, str(tmp_path / "train"), 2, progress=False)
    assert list(tmp_path.iterdir()) == []  # Not even the first, complete shard: the split is written whole or not.


def test_make_tensorboard_listens_on_this_machine_only_unless_asked():
    import subprocess

    from tests.conftest import REPO_ROOT

    def command(*args):
        run = subprocess.run(["make", "-n", "-W", "requirements.txt", "tensorboard", *args], cwd=REPO_ROOT,
                             capture_output=True, text=True)  # fmt: skip
        return [line for line in run.stdout.splitlines() if "bin/tensorboard" in line][-1]

    assert command().endswith("--logdir runs --host 127.0.0.1") and "--bind_all" not in command()
    assert command("HOST=0.0.0.0").endswith("--host 0.0.0.0")
