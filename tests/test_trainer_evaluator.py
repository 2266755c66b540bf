"""A trainer and a separate evaluator (TF_CONFIG chief + evaluator on localhost) that
cannot break each other: keep_checkpoint_max=1 with a checkpoint every step, run
PAIR_RUNS times (2 in `make test`; `PAIR_RUNS=20 make test PYTEST_ARGS='-k twenty'` for
the stress run, which passed 20 of 20)."""

import json
import os
import socket
import subprocess
import time

import gin
import pytest
import tensorflow as tf

from core import cluster, configurables, results
from tests.conftest import REPO_ROOT, tiny_gin_params
from tests.helpers import python

FINAL_STEP = 6
PAIR_RUNS = int(os.environ.get("PAIR_RUNS", "2"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(role, model_dir, dataset, port, **overrides):
    overrides = {
        "TRAIN_STEPS": FINAL_STEP,
        "EVAL_EVERY_STEPS": 1,
        "train_and_evaluate.keep_checkpoint_max": 1,
        "train_and_evaluate.evaluator_timeout_secs": 60,
        "EVAL_HOOKS": "[@per_class_logging()]",  # The evaluator runs the gin list of hooks too.
        "per_class_logging.every_n_steps": 1,
        **overrides,
    }
    args = ["--gin_file=configs/synthetic.gin", f"--model_dir={model_dir}"]
    args += [f"--gin_param={p}" for p in tiny_gin_params(dataset, **overrides)]
    tf_config = {"cluster": {"chief": [f"localhost:{port}"]}, "task": {"type": role, "index": 0}}
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CONFIG=json.dumps(tf_config))
    return subprocess.Popen(
        [python(), "train.py", *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_twenty_trainer_evaluator_runs_with_keep_checkpoint_max_1_end_cleanly(tiny_dataset, tmp_path):
    skipped = 0
    for run in range(PAIR_RUNS):
        model_dir = tmp_path / f"run{run}"
        port = _free_port()
        evaluator = _start("evaluator", model_dir, tiny_dataset, port)
        chief = _start("chief", model_dir, tiny_dataset, port)
        chief_out, chief_err = chief.communicate(timeout=300)
        eval_out, eval_err = evaluator.communicate(timeout=300)
        assert chief.returncode == 0, f"run {run} chief: {chief_err[-2000:]}"
        assert evaluator.returncode == 0, f"run {run} evaluator: {eval_err[-2000:]}"
        assert "evaluated the final step 6; done." in eval_out
        assert "eval batch 1: IoU background" in eval_out
        steps = [record["global_step"] for record in results.read_records(str(model_dir / "eval"))]
        assert steps.count(FINAL_STEP) == 1 and steps == sorted(set(steps)), steps
        leftovers = [p for p in (model_dir / "export").rglob("temp-*")] if (model_dir / "export").exists() else []
        assert not leftovers, leftovers
        skipped += eval_out.count("was deleted before it could be read; skipped")
    print(f"checkpoints deleted under the evaluator and skipped: {skipped}")


# The loss falls, so with "higher is better" on the loss no evaluation after the first
# improves: training stops after the second, long before TRAIN_STEPS.
EARLY_STOPPING = {
    "BEST_METRIC": "'loss'",
    "HIGHER_IS_BETTER": True,
    "best_checkpoint.early_stopping_evals": 1,
    "TRAIN_STEPS": 10**6,
    "EVAL_EVERY_STEPS": 5,
    "train_and_evaluate.keep_checkpoint_max": 5,
    "train_and_evaluate.evaluator_timeout_secs": 600,  # What the evaluator used to wait out.
    "export.image_size": None,
}


@pytest.mark.slow
def test_an_early_stopped_trainer_and_its_evaluators_all_end_at_its_last_checkpoint(tiny_dataset, tmp_path):
    """The trainer records where it stopped (cluster_done/chief-0.json); the separate
    evaluator and `evaluate.py --continuous` end there with exit 0, not at TRAIN_STEPS
    after their timeout; a rerun of the stopped job does nothing."""
    model_dir = tmp_path / "model"
    port = _free_port()
    evaluator = _start("evaluator", model_dir, tiny_dataset, port, **EARLY_STOPPING)
    chief = _start("chief", model_dir, tiny_dataset, port, **EARLY_STOPPING)
    _, chief_err = chief.communicate(timeout=300)
    chief_end = time.time()
    eval_out, eval_err = evaluator.communicate(timeout=120)
    assert chief.returncode == 0, chief_err[-2000:]
    assert evaluator.returncode == 0, eval_err[-2000:]
    assert time.time() - chief_end < 60
    step = int(tf.train.latest_checkpoint(str(model_dir)).rsplit("-", 1)[1])
    stopped = cluster.read_done(str(model_dir), "chief")
    assert stopped["early_stopped"] and stopped["final_step"] == step < 10**6
    assert results.read_records(str(model_dir / "eval"))[-1]["global_step"] == step
    assert f"evaluated the final step {step}; done." in eval_out or "evaluated already; done." in eval_out

    # evaluate.py --continuous, and the same job run again (no TF_CONFIG: one process), in-process.
    gin.clear_config()
    try:
        configurables.parse_gin(["configs/synthetic.gin"], tiny_gin_params(tiny_dataset, **EARLY_STOPPING))
        started = time.time()
        records = configurables.evaluate(model_dir=str(model_dir), continuous=True, eval_name="follow")
        assert [record["global_step"] for record in records] == [step] and time.time() - started < 60
        again = configurables.train_and_evaluate(model_dir=str(model_dir))
        assert again["global_step"] == step
        assert tf.train.latest_checkpoint(str(model_dir)).endswith(f"-{step}")
    finally:
        gin.clear_config()


@pytest.mark.slow
def test_evaluator_gives_up_when_the_trainer_is_gone(tiny_dataset, tmp_path):
    start = time.time()
    evaluator = _start(
        "evaluator", tmp_path / "model", tiny_dataset, _free_port(), **{"train_and_evaluate.evaluator_timeout_secs": 3}
    )
    _, err = evaluator.communicate(timeout=120)
    assert evaluator.returncode == 1
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: evaluator: no new checkpoint in") and "the trainer died or stalled" in line
    assert time.time() - start < 60


def test_snapshot_of_a_checkpoint_deleted_under_it_is_skipped(tmp_path):
    import tensorflow as tf

    from core.evaluation import snapshot

    with tf.Graph().as_default():
        tf.compat.v1.Variable([1.0, 2.0], name="w")
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            path = saver.save(session, str(tmp_path / "model.ckpt"), global_step=3)
    copy = snapshot(path, str(tmp_path / "snap"))
    assert copy and tf.train.load_checkpoint(copy).get_tensor("w").tolist() == [1.0, 2.0]
    for name in tf.io.gfile.glob(path + ".data-*"):
        os.remove(name)  # What keep_checkpoint_max does to the trainer's older checkpoints.
    assert snapshot(path, str(tmp_path / "snap")) is None
