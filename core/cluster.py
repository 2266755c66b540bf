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

DONE_DIR = "cluster_done"


def task():
    """`(task type, task index)` from TF_CONFIG; `(None, 0)` without one."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    t = config.get("task") or {}
    return t.get("type"), int(t.get("index", 0))


def cluster():
    return json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster") or {}


def done_path(model_dir, task_type, task_index=0):
    return os.path.join(model_dir, DONE_DIR, f"{task_type}-{task_index}.json")


def clear_done(model_dir):
    """The chief, before training: markers of an earlier run say nothing about this one."""
    directory = os.path.join(model_dir, DONE_DIR)
    for name in tf.io.gfile.glob(os.path.join(directory, "*.json")):
        tf.io.gfile.remove(name)


def mark_done(model_dir, task_type, task_index=0, **fields):
    """Writes this task's marker atomically (write then rename); nothing outside a TF_CONFIG cluster."""
    if not cluster():
        return
    path = done_path(model_dir, task_type, task_index)
    tf.io.gfile.makedirs(os.path.dirname(path))
    tmp = path + ".tmp"
    with tf.io.gfile.GFile(tmp, "w") as f:
        f.write(json.dumps({"task": task_type, "index": task_index, "pid": os.getpid(), "time": time.time(), **fields}))
    tf.io.gfile.rename(tmp, path, overwrite=True)


def read_done(model_dir, task_type="chief", task_index=0):
    path = done_path(model_dir, task_type, task_index)
    try:
        with tf.io.gfile.GFile(path) as f:
            return json.loads(f.read())
    except (tf.errors.NotFoundError, json.JSONDecodeError):
        return None


def has_workers() -> bool:
    return bool(cluster().get("worker"))


def run_ps(model_dir, stream, poll=0.5):
    """A parameter server that exits 0 once the chief and every worker are done."""
    task_type, task_index = task()
    run_config = tf.estimator.RunConfig()
    server = tf.distribute.Server(
        run_config.cluster_spec,
        job_name=task_type,
        task_index=task_index,
        config=run_config.session_config,
        start=True,
    )
    del server  # Serves until the process exits.
    started = time.time()  # Markers older than this ps are an earlier run's.
    expected = [("chief", 0)] + [("worker", i) for i in range(len(cluster().get("worker", [])))]
    print(f"ps {task_index}: serving; exits when {len(expected)} trainer(s) are done", file=stream, flush=True)
    while True:
        missing = [t for t in expected if (read_done(model_dir, *t) or {}).get("time", 0) < started]
        if not missing:
            break
        time.sleep(poll)
    print(f"ps {task_index}: the chief and every worker are done; exiting", file=stream, flush=True)


class LocalSteps(tf.compat.v1.train.SessionRunHook):
    """Counts this task's own training steps (the global step counts every trainer's)."""

    def __init__(self):
        self.count = 0
        self.first_global_step = None

    def after_create_session(self, session, coord):
        del coord
        self.first_global_step = int(session.run(tf.compat.v1.train.get_global_step()))

    def after_run(self, run_context, run_values):
        self.count += 1
