"""Benchmark: a TF_CONFIG cluster on localhost against one process, same gin, same steps.

Runs `train.py` on configs/synthetic.gin for `--train_steps` (200) three ways:

1. one process (the peer);
2. synchronous: `tools/launch_local_cluster.py --num_workers=1 --num_ps=0` with
   `STRATEGY = @multi_worker_mirrored()` (chief + worker all-reduce, evaluator);
3. asynchronous: `--num_workers=1 --num_ps=1` (Estimator's between-graph
   replication), `--async_runs` times in a row (the issue's 5-of-5 bar).

For each run: exit code, wall time, the final step and whether the evaluator's
last results line is that step, the final mean IoU, how many steps each trainer
took, and whether any of its processes outlived the launcher. Prints a table and,
last, one JSON object with the mean IoU differences against the single process.

    .venv/bin/python bench/cluster.py [--train_steps=200] [--async_runs=5]

On a 2-core machine the cluster is slower than one process (every task shares the
two cores): it is there for correctness here and for scale on real machines.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from common import runtime

runtime.hide_native_logs()

from core import cluster, results  # noqa: E402  After the line above, as every import below.
from tools import launch_local_cluster  # noqa: E402

GIN_FILE = os.path.join(runtime.REPO_ROOT, "configs", "synthetic.gin")


def run(name, model_dir, train_steps, launcher_args=None, params=()):
    flags = [f"--gin_file={GIN_FILE}", f"--gin_param=TRAIN_STEPS = {train_steps}", f"--model_dir={model_dir}"]
    flags += [f"--gin_param={p}" for p in params]
    if launcher_args is None:
        command = [sys.executable, "train.py", *flags]
    else:
        command = [sys.executable, "tools/launch_local_cluster.py", *launcher_args, "--", *flags]
    env = dict(os.environ, PYTHONPATH=runtime.REPO_ROOT)
    env.pop("TF_CONFIG", None)
    start = time.time()
    process = subprocess.run(command, cwd=runtime.REPO_ROOT, env=env, capture_output=True, text=True)
    seconds = time.time() - start
    records = results.read_records(os.path.join(model_dir, "eval"))
    last = records[-1] if records else {}
    chief = cluster.read_done(model_dir, "chief") or {}
    worker = cluster.read_done(model_dir, "worker") or {}
    final = chief.get("final_step", last.get("global_step"))
    row = {
        "run": name,
        "exit": process.returncode,
        "seconds": round(seconds, 1),
        "final_step": final,
        "last_evaluated": last.get("global_step"),
        "mean_iou": last.get("metrics", {}).get("mean_iou"),
        "chief_steps": chief.get("local_steps"),
        "worker_steps": worker.get("local_steps"),
        "leftover_processes": len(launch_local_cluster.processes_mentioning(model_dir)),
    }
    if process.returncode:
        row["tail"] = (process.stdout + process.stderr)[-600:]
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train_steps", type=int, default=200)
    parser.add_argument("--async_runs", type=int, default=5)
    parser.add_argument("--work_dir", default=None, help="where the runs go (default: a new temporary folder)")
    args = parser.parse_args(argv)
    from data import synthetic

    synthetic.prepare_for_config(GIN_FILE, runtime.REPO_ROOT)
    work = args.work_dir or tempfile.mkdtemp(prefix="bench_cluster_")
    rows = [run("one process", os.path.join(work, "single"), args.train_steps)]
    print(json.dumps(rows[-1]), flush=True)
    rows.append(
        run(
            "sync (multi_worker_mirrored)",
            os.path.join(work, "sync"),
            args.train_steps,
            ["--num_workers=1", "--num_ps=0"],
            ["STRATEGY = @multi_worker_mirrored()"],
        )
    )
    print(json.dumps(rows[-1]), flush=True)
    for i in range(args.async_runs):
        rows.append(
            run(f"async {i + 1}", os.path.join(work, f"async_{i}"), args.train_steps, ["--num_workers=1", "--num_ps=1"])
        )
        print(json.dumps(rows[-1]), flush=True)

    header = ("exit", "time", "final", "evald", "mIoU", "chief", "worker")
    print("\n" + f"{'run':30s} " + " ".join(f"{h:>7s}" for h in header))
    for r in rows:
        miou = f"{r['mean_iou']:.4f}" if r["mean_iou"] is not None else "-"
        print(
            f"{r['run']:30s} {r['exit']:7d} {r['seconds']:6.0f}s {r['final_step']!s:>7s} {r['last_evaluated']!s:>7s} "
            f"{miou:>7s} {r['chief_steps']!s:>7s} {r['worker_steps']!s:>7s}"
        )
    single = rows[0]["mean_iou"]
    asyncs = [r for r in rows if r["run"].startswith("async")]
    ok = [
        r for r in asyncs if r["exit"] == 0 and r["last_evaluated"] == r["final_step"] and not r["leftover_processes"]
    ]
    summary = {
        "single_mean_iou": single,
        "sync_minus_single": None if rows[1]["mean_iou"] is None else round(rows[1]["mean_iou"] - single, 4),
        "async_minus_single": [None if r["mean_iou"] is None else round(r["mean_iou"] - single, 4) for r in asyncs],
        "async_passed": f"{len(ok)}/{len(asyncs)}",
        "cluster_over_single_time": round(rows[1]["seconds"] / rows[0]["seconds"], 2),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
