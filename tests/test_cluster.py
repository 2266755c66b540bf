"""A whole TF_CONFIG cluster on localhost through `tools/launch_local_cluster.py`:
chief + 1 worker + 1 ps + evaluator, asynchronous (between-graph, Estimator's default
with ps tasks), on the tiny dataset."""

import json
import os
import subprocess
import sys

import pytest

from core import results
from tests.conftest import REPO_ROOT, tiny_gin_params

TRAIN_STEPS = 150  # Long enough (~8 s of chief training) for the worker (Estimator delays it 5 s) to join.


def _alive_with(text: str) -> list:
    """Pids of live processes whose command line mentions `text`."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    pids.append(int(pid))
        except OSError:
            pass
    return pids


@pytest.mark.slow
def test_local_cluster_trains_to_the_final_step_and_every_task_exits(tiny_dataset, tmp_path):
    model_dir = tmp_path / "model"
    params = tiny_gin_params(
        tiny_dataset,
        TRAIN_STEPS=TRAIN_STEPS,
        EVAL_EVERY_STEPS=50,
        **{"train_and_evaluate.evaluator_timeout_secs": 60},
    )
    command = [
        sys.executable,
        "tools/launch_local_cluster.py",
        "--num_workers=1",
        "--num_ps=1",
        "--timeout_secs=120",
        "--",
        "--gin_file=configs/synthetic.gin",
        f"--model_dir={model_dir}",
        *[f"--gin_param={p}" for p in params],
    ]
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    env.pop("TF_CONFIG", None)
    launcher = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=180)
    logs = {path.name: path.read_text() for path in (model_dir / "cluster_logs").glob("*.log")}
    assert launcher.returncode == 0, launcher.stdout[-2000:] + "\n".join(t[-1500:] for t in logs.values())
    assert sorted(logs) == ["chief-0.log", "evaluator-0.log", "ps-0.log", "worker-0.log"]

    done = json.loads((model_dir / "cluster_done" / "chief-0.json").read_text())
    final = done["final_step"]
    assert final >= TRAIN_STEPS  # Asynchronous workers may overshoot.
    steps = [record["global_step"] for record in results.read_records(str(model_dir / "eval"))]
    assert steps[-1] == final and steps.count(final) == 1 and steps == sorted(set(steps)), steps
    assert f"evaluated the final step {final}; done." in logs["evaluator-0.log"]
    assert "ps 0: the chief and every worker are done; exiting" in logs["ps-0.log"]
    assert "worker 0: done" in logs["worker-0.log"]
    assert not _alive_with(str(model_dir)), "a task outlived the launcher"
