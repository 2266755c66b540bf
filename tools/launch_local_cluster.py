"""Runs a whole TF_CONFIG cluster of `train.py` on localhost.

    python tools/launch_local_cluster.py --num_workers=1 --num_ps=1 -- \\
        --gin_file=configs/synthetic.gin --gin_param='TRAIN_STEPS = 200' --model_dir=D

One chief, N workers, M parameter servers and one evaluator, on free ports picked
now, each running the same `train.py` command with its own TF_CONFIG and its log in
`D/cluster_logs/<task>.log`. Prints a progress line (the chief's latest), waits,
and stops every task (SIGTERM, then SIGKILL) when one fails or on Ctrl-C.
Exits 0 only when every task exited 0 and the evaluator's last result is the
chief's final step.
"""

import argparse
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


def cluster_spec(num_workers: int, num_ps: int) -> dict:
    ports = iter(free_ports(1 + num_workers + num_ps))
    spec = {"chief": [f"localhost:{next(ports)}"]}
    if num_workers:
        spec["worker"] = [f"localhost:{next(ports)}" for _ in range(num_workers)]
    if num_ps:
        spec["ps"] = [f"localhost:{next(ports)}" for _ in range(num_ps)]
    return spec


def model_dir_of(train_args) -> str:
    for i, arg in enumerate(train_args):
        if arg.startswith("--model_dir="):
            return arg.split("=", 1)[1]
        if arg == "--model_dir" and i + 1 < len(train_args):
            return train_args[i + 1]
    raise SystemExit("error: pass --model_dir=D after -- (every task shares it)")


def last_line(path: str, prefix: str) -> str:
    try:
        with open(path, errors="replace") as f:
            lines = [line.strip() for line in f if line.startswith(prefix)]
    except OSError:
        return ""
    return lines[-1] if lines else ""


class Cluster:
    def __init__(self, spec, train_args, model_dir, python=sys.executable):
        self.spec, self.train_args, self.model_dir, self.python = spec, train_args, model_dir, python
        self.log_dir = os.path.join(model_dir, "cluster_logs")
        self.tasks = {}  # name -> (Popen, log file)

    def start(self, task_type, index):
        name = f"{task_type}-{index}"
        os.makedirs(self.log_dir, exist_ok=True)
        log = open(os.path.join(self.log_dir, f"{name}.log"), "w")
        tf_config = {"cluster": self.spec, "task": {"type": task_type, "index": index}}
        env = dict(os.environ, TF_CONFIG=json.dumps(tf_config))
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
        return [(name, p.returncode) for name, (p, _) in self.tasks.items() if p.poll() not in (None, 0)]

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


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if "--" in argv:
        split = argv.index("--")
        own, train_args = argv[:split], argv[split + 1 :]
    else:
        own, train_args = argv, []
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_workers", type=int, default=1)
    parser.add_argument("--num_ps", type=int, default=1)
    parser.add_argument("--progress_every_secs", type=float, default=10.0)
    parser.add_argument("--timeout_secs", type=float, default=0, help="stop everything after this long (0: never)")
    args = parser.parse_args(own)
    model_dir = model_dir_of(train_args)
    spec = cluster_spec(args.num_workers, args.num_ps)
    tasks = Cluster(spec, train_args, model_dir)
    interrupted = []
    signal.signal(signal.SIGINT, lambda *_: interrupted.append(signal.SIGINT))
    signal.signal(signal.SIGTERM, lambda *_: interrupted.append(signal.SIGTERM))
    start = time.time()
    print(
        f"cluster: chief, {args.num_workers} worker(s), {args.num_ps} ps, evaluator; logs in {tasks.log_dir}",
        flush=True,
    )
    tasks.start_all()
    last_report = time.time()
    try:
        while tasks.running() and not tasks.failed() and not interrupted:
            if args.timeout_secs and time.time() - start > args.timeout_secs:
                print(f"cluster: timed out after {args.timeout_secs:g} s", flush=True)
                break
            if time.time() - last_report >= args.progress_every_secs:
                chief = last_line(os.path.join(tasks.log_dir, "chief-0.log"), "step ") or "starting"
                print(f"cluster {time.time() - start:.0f}s: chief {chief}; running {len(tasks.running())}", flush=True)
                last_report = time.time()
            time.sleep(0.2)
    finally:
        tasks.stop()
    failed = tasks.failed()
    if interrupted:
        print("cluster: interrupted; every task stopped", flush=True)
        return 130
    if failed:
        for name, code in failed:
            log = os.path.join(tasks.log_dir, f"{name}.log")
            print(f"cluster: {name} exited {code}: {last_line(log, '') or '(no output)'} (log: {log})", flush=True)
        return 1
    done = _read_json_lines(os.path.join(model_dir, DONE_MARKER))
    records = _read_json_lines(os.path.join(model_dir, RESULTS))
    final = done[-1].get("final_step") if done else None
    evaluated = records[-1]["global_step"] if records else None
    if final is None or evaluated != final:
        print(f"cluster: the chief's final step is {final}, the evaluator's last is {evaluated}", flush=True)
        return 1
    print(f"cluster: done in {time.time() - start:.0f}s; final step {final} evaluated", flush=True)
    return 0


def _read_json_lines(path):
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError):
        return []


if __name__ == "__main__":
    sys.exit(main())
