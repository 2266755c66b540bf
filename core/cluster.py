"""TF_CONFIG roles beyond chief + evaluator: workers, parameter servers, and the
`done` markers that tell every task the job is over.

Estimator drives between-graph replication itself (asynchronous with `ps` tasks);
what it leaves to us:

- only the chief owns the model directory; a worker just trains;
- Estimator's ps calls `server.join()` and never returns: `run_ps` starts the
  server itself and exits once the chief and every worker have written a marker;
- with asynchronous workers the global step overshoots `max_steps`
  (checkpoints 100/200/202): the chief's marker names its true final checkpoint,
  which is what the evaluator waits for.
"""

import json
import os
import time

import tensorflow as tf

from common.errors import TrainerGoneError
from hooks.train_steps import LocalSteps

DONE_DIR = "cluster_done"


def role():
    """This process's TF_CONFIG role, `(type, index)` (`("worker", 1)`); `(None, 0)` without one.

    (TF_CONFIG calls it the "task"; here a task is the model's head, `models/task.py`.)
    """
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    entry = config.get("task") or {}
    return entry.get("type"), int(entry.get("index", 0))


def cluster():
    return json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster") or {}


def done_path(model_dir, task_type, task_index=0):
    return os.path.join(model_dir, DONE_DIR, f"{task_type}-{task_index}.json")


def clear_done(model_dir):
    """The chief, starting from scratch: markers left by an earlier job say nothing about this one."""
    directory = os.path.join(model_dir, DONE_DIR)
    for name in tf.io.gfile.glob(os.path.join(directory, "*.json")):
        tf.io.gfile.remove(name)


def mark_done(model_dir, task_type, task_index=0, **fields):
    """Writes this task's marker atomically (write then rename). The chief's (or a lone
    trainer's) says where training stopped: what evaluators and parameter servers wait for."""
    path = done_path(model_dir, task_type, task_index)
    tf.io.gfile.makedirs(os.path.dirname(path))
    tmp = path + ".tmp"
    with tf.io.gfile.GFile(tmp, "w") as f:
        f.write(json.dumps({"task": task_type, "index": task_index, "pid": os.getpid(), "time": time.time(), **fields}))
    tf.io.gfile.rename(tmp, path, overwrite=True)


def read_done(model_dir, task_type="chief", task_index=0, train_steps=None):
    """A task's marker, or None; with `train_steps`, only a marker of a job with that budget.

    Markers are kept across restarts (a worker that finished while the chief was
    down has finished this job); a job resumed with a larger budget is a new job.
    """
    path = done_path(model_dir, task_type, task_index)
    try:
        with tf.io.gfile.GFile(path) as f:
            done = json.loads(f.read())
    except (tf.errors.NotFoundError, json.JSONDecodeError):
        return None
    return done if train_steps is None or done.get("train_steps") == train_steps else None


def final_marker(model_dir, train_steps):
    """`() -> step or None`: the step where the trainer of this job (this `train_steps`)
    stopped, once it has: `TRAIN_STEPS`, past it (asynchronous workers), or before it
    (early stopping). For `core.evaluation.follow_checkpoints`."""

    def marked():
        done = read_done(model_dir, "chief", train_steps=train_steps)
        return done["final_step"] if done else None

    return marked


def run_ps(model_dir, train_steps, stream, poll=0.5):
    """A parameter server that exits 0 once the chief and every worker are done with this job."""
    task_type, task_index = role()
    run_config = tf.estimator.RunConfig()
    server = tf.distribute.Server(
        run_config.cluster_spec,
        job_name=task_type,
        task_index=task_index,
        config=run_config.session_config,
        start=True,
    )
    del server  # Serves until the process exits.
    expected = [("chief", 0)] + [("worker", i) for i in range(len(cluster().get("worker", [])))]
    print(f"ps {task_index}: serving; exits when {len(expected)} trainer(s) are done", file=stream, flush=True)
    while True:
        missing = [t for t in expected if read_done(model_dir, *t, train_steps=train_steps) is None]
        if not missing:
            break
        time.sleep(poll)
    print(f"ps {task_index}: the chief and every worker are done; exiting", file=stream, flush=True)


class MultiWorkerMirrored:
    """Synchronous training over TF_CONFIG's chief and workers (`STRATEGY = @multi_worker_mirrored()`).

    Every trainer computes a batch per step and the gradients are all-reduced, so a
    step is one batch from each trainer and the run is reproducible. No parameter
    servers. Estimator runs it through its distribute coordinator: the chief saves
    checkpoints, a worker saves its copy under `model_dir/tmp_worker_<i>` (the save
    ops hold collectives every trainer must join; the worker removes it when done).
    """

    multi_worker = True

    def build(self):
        return tf.compat.v1.distribute.experimental.MultiWorkerMirroredStrategy()

    def session_config(self):
        return None  # RunConfig's own: device filters per task.


class Mirrored:
    """Synchronous training on this host's devices (`STRATEGY = @mirrored()`), no TF_CONFIG.

    Every GPU or, without one, `num_cpu_devices` logical CPU devices (declared in
    the session config: without them the session hangs after checkpoint 0). A step
    is one batch per device.
    """

    multi_worker = False

    def __init__(self, num_cpu_devices: int = 2):
        self.num_cpu_devices = num_cpu_devices

    def _cpu_only(self):
        return not tf.config.list_physical_devices("GPU")

    def build(self):
        devices = [f"/cpu:{i}" for i in range(self.num_cpu_devices)] if self._cpu_only() else None
        # Made in a graph, not eagerly: the eager context has one CPU device (only the
        # session config declares the others), and eagerly the strategy places ops on each.
        with tf.Graph().as_default():
            return tf.compat.v1.distribute.MirroredStrategy(devices=devices)

    def session_config(self):
        if not self._cpu_only():
            return None
        return tf.compat.v1.ConfigProto(device_count={"CPU": self.num_cpu_devices}, allow_soft_placement=True)


def check_strategy(strategy):
    """A ConfigError when TF_CONFIG's cluster and the gin STRATEGY cannot work together."""
    from common.errors import ConfigError

    jobs = cluster()
    if strategy is None:
        if jobs.get("worker") and not jobs.get("ps"):
            raise ConfigError(
                "TF_CONFIG lists workers but no ps: asynchronous training (STRATEGY = None) keeps the variables "
                "on parameter servers; add ps tasks, or set STRATEGY = @multi_worker_mirrored() to train synchronously"
            )
        return
    if strategy.multi_worker:
        if jobs.get("ps"):
            raise ConfigError(
                f"STRATEGY = {type(strategy).__name__} all-reduces between chief and workers, but TF_CONFIG lists "
                "ps tasks: drop them, or set STRATEGY = None for asynchronous training with parameter servers"
            )
    elif jobs:
        raise ConfigError(
            f"STRATEGY = {type(strategy).__name__} trains on one host's devices, but TF_CONFIG names a cluster: "
            "use STRATEGY = @multi_worker_mirrored() across machines"
        )


def run_worker(estimator, train_input_fn, eval_input_fn, train_steps, strategy, index, timeout_secs, hooks, stream):
    """A TF_CONFIG worker: trains with the chief until the global step reaches `train_steps`.

    Args:
      estimator: built as the chief's is (`core.experiment.build_estimator`).
      train_input_fn, eval_input_fn: the run's (Estimator wants an EvalSpec; a worker never evaluates).
      train_steps: the step budget.
      strategy: None (asynchronous, with ps tasks) or the synchronous strategy object.
      index: this worker's index.
      timeout_secs: how long an asynchronous worker waits for the chief's first checkpoint.
      hooks: training hooks (the progress line).
      stream: where lines go.
    """
    model_dir = estimator.model_dir
    latest = tf.train.latest_checkpoint(model_dir)
    if latest and int(tf.train.load_variable(latest, "global_step")) >= train_steps:  # Restarted after the end.
        mark_done(model_dir, "worker", index, local_steps=0, train_steps=train_steps)
        print(f"worker {index}: {model_dir} is trained to step {train_steps}; nothing to do", file=stream)
        return
    local_steps = LocalSteps()
    train_spec = tf.estimator.TrainSpec(input_fn=train_input_fn, max_steps=train_steps, hooks=[*hooks, local_steps])
    eval_spec = tf.estimator.EvalSpec(input_fn=eval_input_fn, steps=None, start_delay_secs=0, throttle_secs=0)
    if strategy is None:
        # Asynchronous: a worker whose session comes up before the chief has initialized
        # the variables sleeps 30 s (SessionManager's recovery_wait_secs), so wait for the
        # chief's first checkpoint, saved right after initialization. (A synchronous
        # worker must not wait: the chief's first save is a collective it joins.)
        waited = time.time()
        while not tf.train.latest_checkpoint(model_dir):
            if time.time() - waited > timeout_secs:
                raise TrainerGoneError(
                    f"worker {index}: no checkpoint from the chief in {model_dir} after {timeout_secs:g} s"
                )
            time.sleep(0.2)
    print(f"worker {index}: training {model_dir} to step {train_steps}", file=stream, flush=True)
    tf.estimator.train_and_evaluate(estimator, train_spec, eval_spec)
    # A synchronous worker's own checkpoints (written only because saving is collective).
    own_copy = os.path.join(model_dir, f"tmp_worker_{index}")
    if tf.io.gfile.exists(own_copy):
        tf.io.gfile.rmtree(own_copy)
    mark_done(model_dir, "worker", index, local_steps=local_steps.count, joined_at=local_steps.first_global_step,
              train_steps=train_steps)  # fmt: skip
    print(f"worker {index}: done ({local_steps.count} steps of its own)", file=stream, flush=True)
