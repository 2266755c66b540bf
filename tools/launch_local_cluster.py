"""Runs a whole TF_CONFIG cluster of `train.py` on localhost.

    python tools/launch_local_cluster.py --num_workers=1 --num_ps=1 -- \\
        --gin_file=configs/synthetic.gin --gin_param='TRAIN_STEPS = 200' --model_dir=D

One chief, N workers, M parameter servers and one evaluator, on free ports picked
now, each running the same `train.py` command with its own TF_CONFIG and its log in
`D/cluster_logs/<task>.log`. Prints a progress line (the chief's step, the
evaluator's last evaluation), waits, and stops every task (SIGTERM, then SIGKILL
after 10 s) when one fails, on Ctrl-C, or after --timeout_secs. Exits 0 only when
every task exited 0 and the evaluator's last result is the chief's final step.

Synchronous training needs no parameter servers:
    ... --num_workers=1 --num_ps=0 -- ... --gin_param='STRATEGY = @multi_worker_mirrored()'

`--tfjob=deploy/tfjob.yaml` runs a Kubeflow TFJob manifest's job here: its replica
counts (--num_workers / --num_ps override them), its container's train.py flags
(flags after `--` are added after them, so `--model_dir=D` wins), and the TF_CONFIG
the training operator generates (every replica in `cluster`, the evaluator too).
"""

import argparse
import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DONE_MARKER = os.path.join("cluster_done", "chief-0.json")  # core/cluster.py (not imported: no TensorFlow here)
RESULTS = os.path.join("eval", "results.jsonl")


def free_ports(count: int) -> list:
    """Ports free now (all bound at once, so they differ; a small race remains until the tasks bind them)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def cluster_spec(num_workers: int, num_ps: int, evaluator_in_cluster: bool = False) -> dict:
    """Task addresses. The evaluator is listed too when `evaluator_in_cluster` (Kubeflow's form)."""
    ports = iter(free_ports(1 + num_workers + num_ps + evaluator_in_cluster))
    spec = {"chief": [f"localhost:{next(ports)}"]}
    if num_workers:
        spec["worker"] = [f"localhost:{next(ports)}" for _ in range(num_workers)]
    if num_ps:
        spec["ps"] = [f"localhost:{next(ports)}" for _ in range(num_ps)]
    if evaluator_in_cluster:
        spec["evaluator"] = [f"localhost:{next(ports)}"]
    return spec


def tf_config(spec: dict, task_type: str, index: int, kubeflow: bool = False) -> dict:
    """A task's TF_CONFIG; Kubeflow's training operator also sets `environment: cloud`."""
    config = {"cluster": spec, "task": {"type": task_type, "index": index}}
    if kubeflow:
        config["environment"] = "cloud"
    return config


def read_tfjob(path: str) -> dict:
    """`{"replicas": {type: count}, "args": [...]}` of a TFJob manifest whose roles all run train.py alike."""
    import yaml

    with open(path) as f:
        documents = [d for d in yaml.safe_load_all(f) if d]
    jobs = [d for d in documents if d.get("kind") == "TFJob"]
    if len(jobs) != 1:
        raise SystemExit(f"error: {path}: expected one TFJob, found {len(jobs)}")
    replicas, commands = {}, set()
    for replica_type, replica in jobs[0]["spec"]["tfReplicaSpecs"].items():
        replicas[replica_type.lower()] = int(replica.get("replicas", 1))
        containers = [c for c in replica["template"]["spec"]["containers"] if c["name"] == "tensorflow"]
        if len(containers) != 1:
            raise SystemExit(f"error: {path}: {replica_type} needs one container named 'tensorflow'")
        commands.add((tuple(containers[0].get("command", ())), tuple(containers[0].get("args", ()))))
    if len(commands) != 1:
        raise SystemExit(f"error: {path}: every replica must run the same command and args (found {len(commands)})")
    command, args = commands.pop()
    if not command or command[-1] != "train.py":
        raise SystemExit(f"error: {path}: the command must run train.py, not {' '.join(command) or 'nothing'}")
    if replicas.get("chief", 0) != 1 or replicas.get("evaluator", 0) != 1:
        raise SystemExit(f"error: {path}: needs one Chief and one Evaluator replica")
    return {"replicas": replicas, "args": list(args)}


def model_dir_of(train_args) -> str:
    """The last --model_dir (absl: the last one wins)."""
    found = None
    for i, arg in enumerate(train_args):
        if arg.startswith("--model_dir="):
            found = arg.split("=", 1)[1]
        elif arg == "--model_dir" and i + 1 < len(train_args):
            found = train_args[i + 1]
    if not found:
        raise SystemExit("error: pass --model_dir=D after -- (every task shares it)")
    return found


def processes_mentioning(text: str) -> list:
    """Pids of the live processes whose command line mentions `text` (e.g. a cluster's
    model directory): what the tests and bench/cluster.py check is empty once the
    launcher has returned."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    pids.append(int(pid))
        except OSError:
            pass
    return pids


def last_line(path: str, prefix: str) -> str:
    try:
        with open(path, errors="replace") as f:
            lines = [line.strip() for line in f if line.startswith(prefix)]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def failure_line(path: str) -> str:
    """The line of a failed task's log that says why: its last `error:` (ours) or
    `FATAL` (absl's flag errors) line, else its last line."""
    try:
        with open(path, errors="replace") as f:
            lines = [line.strip() for line in f if line.strip()]
    except OSError:
        return "(no log)"
    for line in reversed(lines):
        if line.startswith(("error:", "FATAL")) or "Error:" in line.split(" ")[0]:
            return line
    return lines[-1] if lines else "(no output)"


class Cluster:
    """The tasks of one cluster: start, restart, watch and stop them."""

    def __init__(self, spec, train_args, model_dir, python=sys.executable, kubeflow=False):
        self.spec, self.train_args, self.model_dir, self.python = spec, train_args, model_dir, python
        self.kubeflow = kubeflow
        self.log_dir = os.path.join(model_dir, "cluster_logs")
        self.tasks = {}  # name -> (Popen, log file)
        self.first_failure = None  # (name, exit code) of the first task seen failing.

    def start(self, task_type, index):
        """Starts (or restarts: its log is appended to) one task."""
        name = f"{task_type}-{index}"
        os.makedirs(self.log_dir, exist_ok=True)
        log = open(os.path.join(self.log_dir, f"{name}.log"), "a" if name in self.tasks else "w")
        config = tf_config(self.spec, task_type, index, self.kubeflow)
        env = dict(os.environ, TF_CONFIG=json.dumps(config))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO_ROOT, env.get("PYTHONPATH")) if p)
        process = subprocess.Popen(
            [self.python, os.path.join(REPO_ROOT, "train.py"), *self.train_args],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Its own process group: Ctrl-C reaches the launcher, which stops it.
        )
        self.tasks[name] = (process, log)

    def start_all(self):
        # The parameter servers and the evaluator first: the chief's session waits for the ps.
        for index in range(len(self.spec.get("ps", []))):
            self.start("ps", index)
        self.start("evaluator", 0)
        self.start("chief", 0)
        for index in range(len(self.spec.get("worker", []))):
            self.start("worker", index)

    def running(self):
        return [name for name, (p, _) in self.tasks.items() if p.poll() is None]

    def failed(self):
        failed = [(name, p.returncode) for name, (p, _) in self.tasks.items() if p.poll() not in (None, 0)]
        if failed and self.first_failure is None:
            self.first_failure = failed[0]
        return failed

    def kill(self, name, sig=signal.SIGKILL):
        """Kills one task (the fault tests), and waits for it."""
        process, log = self.tasks[name]
        self._signal(process, sig)
        process.wait()
        log.close()

    def stop(self, grace_secs=10.0):
        for name in self.running():
            self._signal(self.tasks[name][0], signal.SIGTERM)
        deadline = time.time() + grace_secs
        while self.running() and time.time() < deadline:
            time.sleep(0.1)
        for name in self.running():
            self._signal(self.tasks[name][0], signal.SIGKILL)
        for process, log in self.tasks.values():
            process.wait()
            log.close()

    @staticmethod
    def _signal(process, sig):
        try:
            os.killpg(process.pid, sig)  # The task and anything it started (its own session).
        except ProcessLookupError:
            pass


def progress_line(tasks, started) -> str:
    chief = last_line(os.path.join(tasks.log_dir, "chief-0.log"), "step ") or "starting"
    evaluated = last_line(os.path.join(tasks.log_dir, "evaluator-0.log"), "eval @ step")
    evaluated = evaluated.split("(")[0].strip() if evaluated else "no evaluation yet"
    return f"cluster {time.time() - started:.0f}s: chief {chief}; {evaluated}; {len(tasks.running())} task(s) running"


def supervise(tasks, timeout_secs=0.0, progress_every_secs=10.0, interrupted=(), on_poll=None, stream=sys.stdout):
    """Waits until every task has exited, one fails, `interrupted` fills or time is up; then
    stops them all. `on_poll(tasks)` runs at each poll (the fault tests kill tasks there).

    Returns:
      Why it stopped early ("interrupted", "timed out"), or None.
    """
    started = last_report = time.time()
    reason = None
    try:
        while tasks.running() and not tasks.failed():
            if interrupted:
                reason = "interrupted"
                break
            if timeout_secs and time.time() - started > timeout_secs:
                reason = f"timed out after {timeout_secs:g} s"
                break
            if on_poll is not None:
                on_poll(tasks)
            if time.time() - last_report >= progress_every_secs:
                print(progress_line(tasks, started), file=stream, flush=True)
                last_report = time.time()
            time.sleep(0.2)
    finally:
        tasks.stop()
    return reason


def outcome(tasks, reason=None):
    """`(exit code, one line)`: 0 only when every task exited 0 and the final step was evaluated."""
    tasks.failed()  # Records a failure seen only now.
    if reason == "interrupted":
        return 130, "cluster: interrupted; every task stopped"
    if reason:
        return 1, f"cluster: {reason}; every task stopped"
    if tasks.first_failure:
        name, code = tasks.first_failure
        log = os.path.join(tasks.log_dir, f"{name}.log")
        said = failure_line(log)
        return 1, f"cluster: {name} exited {code}: {said} (log: {log}); every task stopped"
    done = _read_json_lines(os.path.join(tasks.model_dir, DONE_MARKER))
    final = done[-1].get("final_step") if done else None
    for results_file in _results_files(tasks.model_dir):
        records = _read_json_lines(results_file)
        evaluated = records[-1]["global_step"] if records else None
        if final is None or evaluated != final:
            where = os.path.relpath(results_file, tasks.model_dir)
            return 1, f"cluster: the chief's final step is {final}, the evaluator's last in {where} is step {evaluated}"
    return 0, f"cluster: done; final step {final} evaluated ({', '.join(_results_files(tasks.model_dir))})"


def _results_files(model_dir: str) -> list:
    """The evaluator's results: `eval/results.jsonl`, or with EVAL_SETS each `eval_<set>/`'s."""
    single = os.path.join(model_dir, RESULTS)
    if os.path.exists(single):
        return [single]
    return sorted(glob.glob(os.path.join(model_dir, "eval_*", "results.jsonl"))) or [single]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if "--" in argv:
        split = argv.index("--")
        own, train_args = argv[:split], argv[split + 1 :]
    else:
        own, train_args = argv, []
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_workers", type=int, default=None, help="workers (default 1, or the TFJob's)")
    parser.add_argument("--num_ps", type=int, default=None, help="parameter servers (default 1, or the TFJob's)")
    parser.add_argument("--tfjob", default=None, help="run a TFJob manifest's job, with Kubeflow's TF_CONFIG")
    parser.add_argument("--progress_every_secs", type=float, default=10.0)
    parser.add_argument("--timeout_secs", type=float, default=0, help="stop everything after this long (0: never)")
    args = parser.parse_args(own)
    num_workers, num_ps = args.num_workers, args.num_ps
    if args.tfjob:
        job = read_tfjob(args.tfjob)
        train_args = job["args"] + train_args
        num_workers = job["replicas"].get("worker", 0) if num_workers is None else num_workers
        num_ps = job["replicas"].get("ps", 0) if num_ps is None else num_ps
    num_workers = 1 if num_workers is None else num_workers
    num_ps = 1 if num_ps is None else num_ps
    model_dir = model_dir_of(train_args)
    kubeflow = bool(args.tfjob)
    tasks = Cluster(cluster_spec(num_workers, num_ps, kubeflow), train_args, model_dir, kubeflow=kubeflow)
    interrupted = []
    signal.signal(signal.SIGINT, lambda *_: interrupted.append(signal.SIGINT))
    signal.signal(signal.SIGTERM, lambda *_: interrupted.append(signal.SIGTERM))
    started = time.time()
    print(f"cluster: chief, {num_workers} worker(s), {num_ps} ps, evaluator; logs in {tasks.log_dir}", flush=True)
    tasks.start_all()
    reason = supervise(tasks, args.timeout_secs, args.progress_every_secs, interrupted)
    code, line = outcome(tasks, reason)
    print(f"{line} [{time.time() - started:.0f} s]", flush=True)
    return code


def _read_json_lines(path):
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError):
        return []


if __name__ == "__main__":
    sys.exit(main())
