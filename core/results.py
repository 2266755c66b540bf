"""Evaluation results: one JSON line per evaluation in `results.jsonl`, and a console table.

Line format (see shared/design.md): `{"global_step", "checkpoint", "num_examples",
"metrics": {flat scalars}, "per_class": {class: {"iou", "dice"}},
"confusion_matrix": [[...]] (rows = ground truth, columns = prediction)}`.
"""

import json
import math
import os
import sys

import numpy as np
import tensorflow as tf

RESULTS_FILE = "results.jsonl"
PER_EXAMPLE_PREFIX = "per_example-"
PER_CLASS_KEYS = ("iou", "dice")


def _json_float(value):
    value = float(value)
    return None if math.isnan(value) else value


def to_record(eval_result: dict, checkpoint_path: str, class_names) -> dict:
    """Turns Estimator's eval result dict into one results.jsonl record."""
    record = {
        "global_step": int(eval_result["global_step"]),
        "checkpoint": checkpoint_path,
        "num_examples": int(eval_result.get("num_examples", -1)),
        "metrics": {},
        "per_class": {name: {} for name in class_names},
    }
    for key, value in sorted(eval_result.items()):
        if key in ("global_step", "num_examples", "confusion_matrix"):
            continue
        prefix, _, suffix = key.partition("/")
        if prefix in PER_CLASS_KEYS and suffix in record["per_class"]:
            record["per_class"][suffix][prefix] = _json_float(value)
        elif np.ndim(value) == 0 and not isinstance(value, (bytes, str)):
            record["metrics"][key] = _json_float(value)
    if "confusion_matrix" in eval_result:
        record["confusion_matrix"] = np.asarray(eval_result["confusion_matrix"]).astype(int).tolist()
    return record


def append_record(eval_dir: str, record: dict) -> str:
    """Appends one line to `eval_dir/results.jsonl`; returns the file's path."""
    tf.io.gfile.makedirs(eval_dir)
    path = os.path.join(eval_dir, RESULTS_FILE)
    with open(path, "a") as f:
        f.write(json.dumps(record, allow_nan=False) + "\n")
    return path


def write_per_example(eval_dir: str, eval_result: dict, checkpoint_path: str):
    """Writes `per_example-<step>.csv` (index, mean_iou; worst first); None if absent."""
    if "per_example/index" not in eval_result:
        return None
    indices = np.asarray(eval_result["per_example/index"]).astype(np.int64)
    scores = np.asarray(eval_result["per_example/mean_iou"], np.float64)
    order = np.lexsort((indices, np.nan_to_num(scores, nan=np.inf)))  # Worst first; ties by index.
    tf.io.gfile.makedirs(eval_dir)
    path = os.path.join(eval_dir, f"{PER_EXAMPLE_PREFIX}{int(eval_result['global_step'])}.csv")
    with open(path, "w") as f:
        f.write(f"# checkpoint: {checkpoint_path}\nindex,mean_iou\n")
        for i in order:
            f.write(f"{indices[i]},{'' if np.isnan(scores[i]) else repr(float(scores[i]))}\n")
    return path


def read_per_example(path: str):
    """`(checkpoint_path, [(index, mean_iou or None)])` from a per-example CSV, worst first."""
    with open(path) as f:
        checkpoint = f.readline().partition(": ")[2].strip()
        f.readline()
        rows = []
        for line in f:
            index, _, score = line.strip().partition(",")
            rows.append((int(index), float(score) if score else None))
    return checkpoint, rows


def latest_per_example(eval_dir: str):
    """The per-example CSV of the highest step in `eval_dir`, or None."""
    paths = tf.io.gfile.glob(os.path.join(eval_dir, f"{PER_EXAMPLE_PREFIX}*.csv"))
    if not paths:
        return None
    return max(paths, key=lambda p: int(os.path.basename(p)[len(PER_EXAMPLE_PREFIX) : -len(".csv")]))


def check_example_count(eval_result: dict, expected):
    """Evaluation is strict: it must have seen every example of its split (or subset)."""
    seen = int(eval_result.get("num_examples", -1))
    if expected is not None and seen != expected:
        raise ValueError(f"evaluation saw {seen} examples, the split holds {expected}: examples were dropped")


def report(eval_dir: str, eval_result: dict, checkpoint_path: str, class_names, stream=None) -> dict:
    """Records one evaluation: results.jsonl line, per-example CSV, printed table."""
    record = to_record(eval_result, checkpoint_path, class_names)
    append_record(eval_dir, record)
    write_per_example(eval_dir, eval_result, checkpoint_path)
    print(format_table(record), file=stream or sys.stdout, flush=True)
    return record


def read_records(eval_dir: str) -> list:
    """All records of `eval_dir/results.jsonl`, oldest first ([] if none)."""
    path = os.path.join(eval_dir, RESULTS_FILE)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _cell(value):
    return "   n/a" if value is None else f"{value:6.4f}"


def format_table(record: dict) -> str:
    """A compact text table: headline metrics, then one row per class."""
    metrics = record["metrics"]
    head = [f"eval @ step {record['global_step']}  ({record['num_examples']} examples)"]
    head.append("  ".join(f"{key} {_cell(metrics[key])}" for key in sorted(metrics) if key != "loss"))
    if "loss" in metrics:
        head[-1] = f"loss {_cell(metrics['loss'])}  " + head[-1]
    width = max([len(name) for name in record["per_class"]] + [5])
    rows = [f"  {'class':<{width}}  " + "  ".join(f"{key:>6}" for key in PER_CLASS_KEYS)]
    for name, values in record["per_class"].items():
        rows.append(f"  {name:<{width}}  " + "  ".join(_cell(values.get(key)) for key in PER_CLASS_KEYS))
    return "\n".join(head + rows)


class ResultsReporter(tf.estimator.Exporter):
    """An Exporter that exports nothing: it records and prints each evaluation.

    `train_and_evaluate` hands every evaluation's result to its exporters, so this
    is the one place that sees every result with its checkpoint.
    """

    def __init__(self, eval_dir: str, class_names, stream=None, expected_examples=None):
        self._eval_dir = eval_dir
        self._class_names = list(class_names)
        self._stream = stream or sys.stdout
        self._expected_examples = expected_examples

    @property
    def name(self):
        return "results"

    def export(self, estimator, export_path, checkpoint_path, eval_result, is_the_final_export):
        del estimator, export_path, is_the_final_export
        check_example_count(eval_result, self._expected_examples)
        report(self._eval_dir, eval_result, checkpoint_path, self._class_names, self._stream)
        return None
