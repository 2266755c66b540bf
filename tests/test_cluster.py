"""TF_CONFIG clusters (docs/distributed.md).

In process: each trainer's share of the training stream (standard and Kubeflow
TF_CONFIG, a synchronous strategy's input context, resume under a strategy), the
STRATEGY checks, state updates under a strategy, and `@mirrored()` end to end.
Through `tools/launch_local_cluster.py` on localhost (slow): chief + worker + ps +
evaluator, asynchronous; the same with the worker killed and restarted; chief +
worker + evaluator, synchronous; the TFJob manifest with Kubeflow's TF_CONFIG.
"""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from common.errors import ConfigError
from core import cluster, results
from data import input as data_input
from models.segmentation import Segmentation
from tests.conftest import REPO_ROOT, TINY_SIZE, TINY_TRAIN, tiny_gin_params
from tools import launch_local_cluster as launcher

SEGMENTATION = Segmentation(4)


def _run_config(monkeypatch, tf_config):
    monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    return tf.estimator.RunConfig()


def _spec(evaluator_in_cluster=False):
    return launcher.cluster_spec(num_workers=1, num_ps=1, evaluator_in_cluster=evaluator_in_cluster)


def _indices(input_fn, batches, **kwargs):
    return [int(i) for features, _ in input_fn(**kwargs).take(batches) for i in features["index"].numpy()]


def _train_fn(root, batch_size=2, **kwargs):
    return data_input.make_input_fn(
        str(root / "train-*.tfrecord"), batch_size, TINY_SIZE, TINY_SIZE, SEGMENTATION, training=True, seed=3, **kwargs
    )


@pytest.mark.parametrize("kubeflow", [False, True])
def test_chief_and_worker_read_disjoint_halves_of_each_pass(tiny_dataset, monkeypatch, kubeflow):
    """A pass of 12 examples: the chief reads 6, the worker the other 6 (Kubeflow lists the
    evaluator and the ps in `cluster`: neither may count as a trainer)."""
    spec = _spec(evaluator_in_cluster=kubeflow)
    fn = _train_fn(tiny_dataset)
    half = TINY_TRAIN // 2 // 2  # Batches of 2.
    chief = _indices(fn, half, config=_run_config(monkeypatch, launcher.tf_config(spec, "chief", 0, kubeflow)))
    worker = _indices(fn, half, config=_run_config(monkeypatch, launcher.tf_config(spec, "worker", 0, kubeflow)))
    alone = _indices(fn, TINY_TRAIN // 2, config=None)
    assert not set(chief) & set(worker)
    assert sorted(chief + worker) == list(range(TINY_TRAIN))
    # Each keeps its positions of the one seeded stream: chief even, worker odd.
    assert chief == alone[0::2] and worker == alone[1::2]


def test_a_strategy_input_context_shards_the_stream_and_resumes_from_the_checkpoint(tiny_dataset, tmp_path):
    """Under a synchronous strategy a step takes a batch per replica: resuming at step 2 of
    two replicas (batch 2) skips 2 x 2 x 2 = 8 positions of the stream."""
    fn = _train_fn(tiny_dataset)
    alone = _indices(fn, 12, config=None)
    contexts = [tf.distribute.InputContext(2, i, 2) for i in range(2)]
    first = [_indices(fn, 3, input_context=c) for c in contexts]
    assert first == [alone[0:12:2], alone[1:12:2]]

    with tf.Graph().as_default():
        step = tf.compat.v1.train.get_or_create_global_step()
        with tf.compat.v1.Session() as session:
            session.run(step.assign(2))
            tf.compat.v1.train.Saver().save(session, str(tmp_path / "model.ckpt"), global_step=2)
    config = tf.estimator.RunConfig(model_dir=str(tmp_path))
    resumed = [_indices(fn, 2, config=config, input_context=c) for c in contexts]
    assert resumed == [alone[8:16:2], alone[9:16:2]]


def test_strategy_and_cluster_must_agree(monkeypatch):
    spec = launcher.cluster_spec(num_workers=1, num_ps=0)
    monkeypatch.setenv("TF_CONFIG", json.dumps(launcher.tf_config(spec, "chief", 0)))
    with pytest.raises(ConfigError, match="no ps: asynchronous"):
        cluster.check_strategy(None)
    cluster.check_strategy(cluster.MultiWorkerMirrored())
    with pytest.raises(ConfigError, match="one host's devices"):
        cluster.check_strategy(cluster.Mirrored())
    monkeypatch.setenv("TF_CONFIG", json.dumps(launcher.tf_config(_spec(), "chief", 0)))
    with pytest.raises(ConfigError, match="lists ps tasks"):
        cluster.check_strategy(cluster.MultiWorkerMirrored())
    cluster.check_strategy(None)


def test_state_updates_under_a_strategy_are_the_moving_averages_only():
    """Each device copy of a variable has its own initializer; counting one as a state
    update re-initialized every weight at every step (training under a strategy stalled)."""
    from models.model_fn import state_updates

    with tf.Graph().as_default() as graph:
        strategy = cluster.Mirrored(num_cpu_devices=2).build()
        found = []

        def replica_fn():
            first = len(graph.get_operations())
            layer_input = tf.ones([2, 4, 4, 3])
            conv = tf.keras.layers.Conv2D(2, 3, name="conv")(layer_input)
            tf.keras.layers.BatchNormalization(name="norm")(conv, training=True)
            found.append(state_updates(graph, first))

        with strategy.scope():
            strategy.extended.call_for_each_replica(replica_fn)
    assert len(found) == 2
    for updates in found:
        names = [op.name for op in updates]
        assert len(names) == 2 and all("AssignMovingAvg" in name for name in names), names


def _checkpoint_variable(model_dir, step, name="up0_conv0/kernel"):
    return tf.train.load_variable(str(model_dir / f"model.ckpt-{step}"), name)


@pytest.mark.slow
def test_mirrored_trains_with_evaluations_and_moves_the_weights(tiny_dataset, tmp_path):
    """`STRATEGY = @mirrored()` on two logical CPUs: evaluations at every checkpoint (its saving
    listeners run), and the weights move on from step to step (they were reset at each)."""
    import gin

    from core import configurables

    model_dir = tmp_path / "model"
    gin.clear_config()
    try:
        configurables.parse_gin(
            ["configs/synthetic.gin"],
            tiny_gin_params(tiny_dataset, TRAIN_STEPS=8, EVAL_EVERY_STEPS=4, STRATEGY="@mirrored()"),
        )
        with open(os.devnull, "w") as quiet:
            configurables.train_and_evaluate(model_dir=str(model_dir), stream=quiet)
    finally:
        gin.clear_config()
    steps = [r["global_step"] for r in results.read_records(str(model_dir / "eval"))]
    assert steps == [4, 8]
    # Adam's first step moves every weight by at most the learning rate (2e-3): weights
    # re-initialized before each step could never be further than that from their start.
    start = _checkpoint_variable(model_dir, 0)
    moved = np.abs(_checkpoint_variable(model_dir, 8) - start).max()
    assert moved > 6e-3, moved


def _launch(model_dir, launcher_args, params, gin_file="configs/synthetic.gin", timeout=240):
    command = [sys.executable, "tools/launch_local_cluster.py", *launcher_args, "--timeout_secs=200", "--"]
    command += [f"--gin_file={gin_file}"] if gin_file else []
    command += [f"--model_dir={model_dir}", *[f"--gin_param={p}" for p in params]]
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    env.pop("TF_CONFIG", None)
    run = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    logs = {path.name: path.read_text() for path in (model_dir / "cluster_logs").glob("*.log")}
    assert run.returncode == 0, run.stdout[-2000:] + "\n".join(f"== {k}\n{t[-1500:]}" for k, t in logs.items())
    assert not launcher.processes_mentioning(str(model_dir)), "a task outlived the launcher"
    return run, logs


def _done(model_dir, task_type):
    """The task's (index 0) end-of-training marker; None when it wrote none."""
    return cluster.read_done(str(model_dir), task_type)


def _evaluated_steps(model_dir):
    return [record["global_step"] for record in results.read_records(str(model_dir / "eval"))]


def _gin(tiny_dataset, **overrides):
    return tiny_gin_params(
        tiny_dataset, **{"train_and_evaluate.evaluator_timeout_secs": 60, "EVAL_EVERY_STEPS": 50, **overrides}
    )


def _check_asynchronous_run(model_dir, logs, budget):
    """The final checkpoint (past the budget when the asynchronous worker overshoots) is
    evaluated exactly once, every task said it was done, and the progress lines count
    global steps."""
    assert sorted(logs) == ["chief-0.log", "evaluator-0.log", "ps-0.log", "worker-0.log"]
    final = _done(model_dir, "chief")["final_step"]
    assert final >= budget
    steps = _evaluated_steps(model_dir)
    assert steps[-1] == final and steps.count(final) == 1 and steps == sorted(set(steps)), steps
    assert f"evaluated the final step {final}; done." in logs["evaluator-0.log"]
    assert "ps 0: the chief and every worker are done; exiting" in logs["ps-0.log"]
    # Both trained, and between them made every step (asynchronous: each step is one trainer's).
    chief, worker = _done(model_dir, "chief")["local_steps"], _done(model_dir, "worker")["local_steps"]
    assert chief > 0 and worker > 0 and chief + worker >= final
    for line in logs["worker-0.log"].splitlines() + logs["chief-0.log"].splitlines():
        if line.startswith("step "):
            done = int(line.split()[1].split("/")[0])
            assert done <= final and "-" not in line, line


def _run_with_faults(model_dir, tiny_dataset, faults):
    """A chief + worker + ps + evaluator job of 1,000 steps; `faults` is `[(step, role)]`: once
    a checkpoint at or past that step exists (asynchronous steps land on 301, 302...), the
    role's task is killed (SIGKILL: no clean shutdown) and restarted a second later.
    Returns the launcher's outcome."""
    params = _gin(tiny_dataset, TRAIN_STEPS=1000, EVAL_EVERY_STEPS=100)
    train_args = ["--gin_file=configs/synthetic.gin", f"--model_dir={model_dir}"] + [f"--gin_param={p}" for p in params]
    tasks = launcher.Cluster(launcher.cluster_spec(1, 1), train_args, str(model_dir))
    pending = list(faults)

    def inject(tasks):
        saved_steps = [int(p.name.split("-")[1].split(".")[0]) for p in model_dir.glob("model.ckpt-*.index")]
        if pending and max(saved_steps, default=-1) >= pending[0][0]:
            _, role = pending.pop(0)
            tasks.kill(f"{role}-0")
            time.sleep(1)
            tasks.start(role, 0)

    saved = os.environ.pop("TF_CONFIG", None)
    try:
        tasks.start_all()
        with open(os.devnull, "w") as quiet:
            reason = launcher.supervise(tasks, 200, 1e9, on_poll=inject, stream=quiet)
    finally:
        if saved is not None:
            os.environ["TF_CONFIG"] = saved
    assert not pending, f"the job ended before these faults: {pending}"
    assert not launcher.processes_mentioning(str(model_dir))
    return launcher.outcome(tasks, reason)


def _check_ended(model_dir):
    final = _done(model_dir, "chief")["final_step"]
    assert final >= 1000 and _evaluated_steps(model_dir)[-1] == final


@pytest.mark.slow
def test_a_worker_a_ps_and_the_chief_killed_and_restarted_and_the_job_ends(tiny_dataset, tmp_path):
    """One job, three faults: the worker rejoins; after the ps, the chief and the worker
    recover their sessions from the last checkpoint; the chief takes its lock again and
    carries on. The job ends at the budget, its final step evaluated; every task exits 0."""
    model_dir = tmp_path / "model"
    code, line = _run_with_faults(model_dir, tiny_dataset, [(100, "worker"), (300, "ps"), (500, "chief")])
    logs = {role: _read(model_dir / "cluster_logs" / f"{role}-0.log") for role in ("worker", "ps", "chief")}
    assert code == 0, line + "\n" + "\n".join(log[-1500:] for log in logs.values())
    assert logs["worker"].count("worker 0: training") == 2, logs["worker"][-2000:]
    assert logs["ps"].count("ps 0: serving") == 2 and logs["chief"].count("training ") == 2, logs
    assert _done(model_dir, "worker")["local_steps"] > 0  # The restarted worker trained.
    _check_ended(model_dir)


def _read(path):
    try:
        return path.read_text()
    except OSError:
        return ""


@pytest.mark.slow
def test_synchronous_cluster_takes_every_step_together(tiny_dataset, tmp_path):
    """`STRATEGY = @multi_worker_mirrored()`, no ps: the chief and the worker each take every
    step (one batch each, gradients all-reduced), the final step is TRAIN_STEPS exactly, and
    the worker's own copy of the checkpoints (model_dir/tmp_worker_0) is gone."""
    model_dir = tmp_path / "model"
    params = _gin(tiny_dataset, TRAIN_STEPS=20, EVAL_EVERY_STEPS=10, STRATEGY="@multi_worker_mirrored()")
    _launch(model_dir, ["--num_workers=1", "--num_ps=0"], params)
    assert _done(model_dir, "chief")["final_step"] == 20
    assert _done(model_dir, "chief")["local_steps"] == 20 and _done(model_dir, "worker")["local_steps"] == 20
    assert _evaluated_steps(model_dir)[-1] == 20
    assert not (model_dir / "tmp_worker_0").exists()


@pytest.mark.slow
def test_the_tfjob_manifest_runs_here_with_kubeflows_tf_config(tiny_dataset, tmp_path):
    """deploy/tfjob.yaml: every role runs the same train.py flags and mounts the shared model
    directory; the clean-up policy leaves the evaluator alone; and the job it describes runs
    here, asynchronously (chief + worker + ps + evaluator), with the TF_CONFIG the training
    operator generates (evaluator inside `cluster`)."""
    import yaml

    manifest = os.path.join(REPO_ROOT, "deploy", "tfjob.yaml")
    with open(manifest) as f:
        documents = [d for d in yaml.safe_load_all(f) if d]
    job = next(d for d in documents if d["kind"] == "TFJob")
    claim = next(d for d in documents if d["kind"] == "PersistentVolumeClaim")
    assert job["apiVersion"] == "kubeflow.org/v1"
    assert job["spec"]["runPolicy"]["cleanPodPolicy"] == "None"
    replicas = job["spec"]["tfReplicaSpecs"]
    assert sorted(replicas) == ["Chief", "Evaluator", "PS", "Worker"]
    assert "ReadWriteMany" in claim["spec"]["accessModes"]
    parsed = launcher.read_tfjob(manifest)
    for replica in replicas.values():
        pod = replica["template"]["spec"]
        (container,) = pod["containers"]
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        (volume,) = [v for v in pod["volumes"] if v["name"] in mounts]
        assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
        assert launcher.model_dir_of(container["args"]).startswith(mounts[volume["name"]] + "/")
        assert replica["restartPolicy"] == "OnFailure"
    for arg in parsed["args"]:
        if arg.startswith("--gin_file="):
            assert os.path.exists(os.path.join(REPO_ROOT, arg.split("=", 1)[1])), arg

    model_dir = tmp_path / "model"
    params = _gin(tiny_dataset, TRAIN_STEPS=150)
    _, logs = _launch(model_dir, [f"--tfjob={manifest}", "--num_workers=1"], params, gin_file=None)
    _check_asynchronous_run(model_dir, logs, 150)
