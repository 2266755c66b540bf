"""Evaluation results: one JSON line per evaluation in `results.jsonl`, and a console table.

Line format: `{"global_step", "checkpoint", "num_examples", "metrics": {flat
scalars}, "per_class": {class: {key: value}}, ...}` where the per-class keys are the
task's (`iou`, `dice` for segmentation; `precision`, `recall`, ... for
classification), plus any array the task's metrics return, e.g.
`"confusion_matrix": [[...]]` (rows = ground truth, columns = prediction).
Nothing here knows which task produced the result.
"""

import csv
import io
import json
import math
import os
import sys
import zipfile

import numpy as np
import tensorflow as tf

from common import files
from common.errors import EvaluationError, RunError, first_line
from metrics import bootstrap, slices
from metrics.summaries import PER_EXAMPLE_KEY_PREFIX, STATISTICS_KEY_PREFIX  # Result keys: "per_example/<name>".

RESULTS_FILE = "results.jsonl"
PER_EXAMPLE_FILE_PREFIX = "per_example-"  # The CSV files: per_example-<step>.csv.
STATISTICS_FILE_PREFIX = "statistics-"  # The per-example sufficient statistics: statistics-<step>.npz.
STATISTICS_ARRAY = "statistic_"  # Their arrays' names in the file.


def _json_float(value):
    value = float(value)
    return None if math.isnan(value) else value


def to_record(eval_result: dict, checkpoint_path: str, class_names, per_class_keys) -> dict:
    """Turns Estimator's eval result dict into one results.jsonl record.

    `<key>/<class>` values with a key in `per_class_keys` go to `per_class`, other
    scalars to `metrics`, arrays (the confusion matrix) under their own name;
    serialized summaries (bytes) and the per-example arrays are left out.
    """
    record = {
        "global_step": int(eval_result["global_step"]),
        "checkpoint": checkpoint_path,
        "num_examples": int(eval_result.get("num_examples", -1)),
        "metrics": {},
        "per_class": {name: {} for name in class_names} if per_class_keys else {},
    }
    for key, value in sorted(eval_result.items()):
        if key in ("global_step", "num_examples") or key.startswith((PER_EXAMPLE_KEY_PREFIX, STATISTICS_KEY_PREFIX)):
            continue
        prefix, _, suffix = key.partition("/")
        if isinstance(value, (bytes, str)):
            continue
        if prefix in per_class_keys and suffix in record["per_class"]:
            record["per_class"][suffix][prefix] = _json_float(value)
        elif np.ndim(value) == 0:
            record["metrics"][key] = _json_float(value)
        elif "/" not in key:
            array = np.asarray(value)
            record[key] = (array.astype(int) if np.issubdtype(array.dtype, np.integer) else array).tolist()
    for name, values in record["per_class"].items():  # The task's column order.
        record["per_class"][name] = {key: values[key] for key in per_class_keys if key in values}
    return record


def evaluated_steps(eval_dir: str) -> set:
    """The global steps `eval_dir/results.jsonl` has a record of."""
    return {record["global_step"] for record in read_records(eval_dir)}


def append_record(eval_dir: str, record: dict, log=print) -> str:
    """Adds one line to `eval_dir/results.jsonl` (replacing an earlier record of the same
    step: a step retrained after a torn checkpoint); returns the file's path.

    The file is written anew and renamed into place (`common.files.write_atomic`), so a
    crash or a full disk leaves the old file or the new one, never a torn line.
    """
    kept = [old for old in read_records(eval_dir, log) if old["global_step"] != record["global_step"]]
    lines = [json.dumps(old, allow_nan=False) for old in kept] + [json.dumps(record, allow_nan=False)]
    return files.write_atomic(os.path.join(eval_dir, RESULTS_FILE), "".join(line + "\n" for line in lines))


def _csv_value(value) -> str:
    value = float(value)
    if math.isnan(value):
        return ""
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


def write_per_example(
    eval_dir: str, eval_result: dict, checkpoint_path: str, score: str, worst_is_lowest=True, examples=None
):
    """Writes `per_example-<step>.csv` (index, score, other values, file name; worst first); None if absent.

    Args:
      score: the per-example value that ranks examples (the task's `per_example_score`).
      worst_is_lowest: whether the lowest score is the worst (IoU) or the highest (an error).
      examples: each example's `(file name, height, width)` by index (the split's records), or None.
    """
    if PER_EXAMPLE_KEY_PREFIX + "index" not in eval_result:
        return None
    filenames = [name for name, _, _ in examples] if examples is not None else None
    indices = np.asarray(eval_result[PER_EXAMPLE_KEY_PREFIX + "index"]).astype(np.int64)
    names = [score] + sorted(
        key[len(PER_EXAMPLE_KEY_PREFIX) :]
        for key in eval_result
        if key.startswith(PER_EXAMPLE_KEY_PREFIX) and key[len(PER_EXAMPLE_KEY_PREFIX) :] not in ("index", score)
    )
    columns = [np.asarray(eval_result[PER_EXAMPLE_KEY_PREFIX + name], np.float64) for name in names]
    ranked = columns[0] if worst_is_lowest else -columns[0]
    order = np.lexsort((indices, np.nan_to_num(ranked, nan=np.inf)))  # Worst first; undefined last; ties by index.
    path = os.path.join(eval_dir, f"{PER_EXAMPLE_FILE_PREFIX}{int(eval_result['global_step'])}.csv")
    text = io.StringIO()
    text.write(f"# checkpoint: {checkpoint_path}\n")
    rows = csv.writer(text, lineterminator="\n")
    rows.writerow(["index", *names] + (["filename"] if filenames is not None else []))
    for i in order:
        name = [filenames[indices[i]]] if filenames is not None else []
        rows.writerow([str(indices[i])] + [_csv_value(column[i]) for column in columns] + name)
    return files.write_atomic(path, text.getvalue())


def read_per_example(path: str):
    """`(checkpoint_path, [(index, score or None)])` from a per-example CSV, worst first."""
    with open(path) as f:
        checkpoint = f.readline().partition(": ")[2].strip()
        f.readline()
        rows = []
        for line in f:
            index, score = line.strip().split(",")[:2]
            rows.append((int(index), float(score) if score else None))
    return checkpoint, rows


def files_by_step(eval_dir: str, prefix: str, suffix: str) -> dict:
    """`{step: path}` of the `<prefix><step><suffix>` files in `eval_dir`."""
    paths = tf.io.gfile.glob(os.path.join(eval_dir, f"{prefix}*{suffix}"))
    return {int(os.path.basename(p)[len(prefix) : -len(suffix)]): p for p in paths}


def latest_per_example(eval_dir: str):
    """The per-example CSV of the highest step in `eval_dir`, or None."""
    paths = files_by_step(eval_dir, PER_EXAMPLE_FILE_PREFIX, ".csv")
    return paths[max(paths)] if paths else None


def check_example_count(eval_result: dict, expected):
    """Evaluation is strict: it must have seen every example of its split (or subset)."""
    seen = int(eval_result.get("num_examples", -1))
    if expected is not None and seen != expected:
        raise RunError(f"evaluation saw {seen} examples, the split holds {expected}: examples were dropped")


def statistics_of(eval_result: dict):
    """`(index int64 [N], {name: float64 [N, k]})`: each evaluated example's sufficient
    statistics, in evaluation order; None if the evaluation kept none."""
    names = [key[len(STATISTICS_KEY_PREFIX) :] for key in eval_result if key.startswith(STATISTICS_KEY_PREFIX)]
    if not names or PER_EXAMPLE_KEY_PREFIX + "index" not in eval_result:
        return None
    index = np.asarray(eval_result[PER_EXAMPLE_KEY_PREFIX + "index"]).astype(np.int64)
    return index, {
        name: np.asarray(eval_result[STATISTICS_KEY_PREFIX + name]).reshape(len(index), -1) for name in names
    }


def statistics_path(eval_dir: str, step: int) -> str:
    return os.path.join(eval_dir, f"{STATISTICS_FILE_PREFIX}{step}.npz")


def write_statistics(eval_dir: str, step: int, checkpoint_path: str, index, statistics: dict, task, examples=None):
    """Writes `statistics-<step>.npz`: `index` and each statistic, rows sorted by index, with
    what `tools/compare.py` and `tools/slices.py` need to read them alone: the checkpoint,
    the task's class and class names, and each example's file name and image size when
    known (`examples`: `(file name, height, width)` by index, the split's records).

    Returns:
      `(path, kept)`: the file, and its content as `read_statistics` would return it.
    """
    order = np.argsort(index, kind="stable")
    arrays = {name: values[order] for name, values in statistics.items()}
    for name, values in arrays.items():
        if np.all(values == np.round(values)) and np.abs(values).max(initial=0) < 2**31:
            arrays[name] = values.astype(np.int32)  # Counts: 4 bytes, and they compress.
    about = {
        "checkpoint": np.asarray(checkpoint_path),
        "task": np.asarray(task.name),  # A name in the task registry (models/task.py), never code.
        "class_names": np.asarray(list(task.class_names), dtype=str),
    }
    if examples is not None:
        about["filenames"] = np.asarray([examples[i][0] for i in index[order]], dtype=str)
        about["image_sizes"] = np.asarray([examples[i][1:3] for i in index[order]], dtype=np.int32).reshape(-1, 2)
    content = {"index": index[order], **about, **{STATISTICS_ARRAY + k: v for k, v in arrays.items()}}
    data = io.BytesIO()
    np.savez_compressed(data, **content)
    path = files.write_atomic(statistics_path(eval_dir, step), data.getvalue())
    return path, _statistics(_Arrays(content))


class _Arrays(dict):
    """A dict of arrays read as `np.load`'s NpzFile is (`files`, `[name]`)."""

    @property
    def files(self):
        return list(self)


def read_statistics(path: str) -> dict:
    """A `statistics-<step>.npz` as `{"checkpoint", "task", "class_names", "filenames"
    (or None), "image_sizes" (int [N, 2], or None), "index" [N], "statistics": {name: [N, k]}}`.

    Raises:
      EvaluationError: one line naming the file when it is missing, torn or not one.
    """
    try:
        with np.load(path) as data:
            return _statistics(data)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise EvaluationError(
            f"{path} is not a readable statistics file ({first_line(error) or type(error).__name__})"
        ) from None


def _statistics(data) -> dict:
    return {
        "checkpoint": str(data["checkpoint"]),
        "task": str(data["task"]),
        "class_names": [str(name) for name in data["class_names"]],
        "filenames": [str(name) for name in data["filenames"]] if "filenames" in data.files else None,
        "image_sizes": data["image_sizes"] if "image_sizes" in data.files else None,
        "index": data["index"],
        "statistics": {k[len(STATISTICS_ARRAY) :]: data[k] for k in data.files if k.startswith(STATISTICS_ARRAY)},
    }


# Files written before tasks had names held the class path: the shipped ones map to names.
_SHIPPED_CLASS_PATHS = {
    "models.tasks:Segmentation": "segmentation",
    "models.tasks:Classification": "classification",
    "models.tasks:Regression": "regression",
}


def task_of(kept: dict, path: str = "a statistics file"):
    """The task a statistics file was written by, rebuilt with its class names: its
    `from_sums` reads the file's statistics.

    The file names the task; it is looked up among the registered tasks (every `Task`
    subclass with a `name`, `models/task.py`), never imported from the file: a data file
    runs no code.

    Raises:
      EvaluationError: a task not registered in this process, naming the file.
    """
    import models.classification  # noqa: F401  The shipped tasks, registered by their import.
    import models.regression  # noqa: F401
    import models.segmentation  # noqa: F401
    from models.task import registered

    name = _SHIPPED_CLASS_PATHS.get(kept["task"], kept["task"])
    task_class = registered(name)
    if task_class is None:
        raise EvaluationError(
            f"{path} was written by the task {name!r}, which is not known here: pass the run's --gin_file, "
            "whose `import` loads the module that defines it"
        )
    return task_class.from_class_names(kept["class_names"])


def report(eval_dir: str, eval_result: dict, checkpoint_path: str, task, stream=None, examples=None, slicing=None):
    """Records one evaluation: results.jsonl line (with the bootstrap intervals of the
    task's `from_sums` metrics, and the slices of `slicing`), per-example CSV and
    statistics, printed tables, TensorBoard text and scalars."""
    stream = stream or sys.stdout
    record = to_record(eval_result, checkpoint_path, task.class_names, task.per_class_keys)
    kept = statistics_of(eval_result)
    if kept is not None:
        tf.io.gfile.makedirs(eval_dir)
        _, written = write_statistics(eval_dir, record["global_step"], checkpoint_path, *kept, task, examples)
        record["ci"] = bootstrap.intervals(kept[1], task.from_sums)
        if slicing:
            record["slices"] = compute_slices(written, task, slicing)
        write_interval_summary(eval_dir, record)
    elif slicing:
        raise EvaluationError("slices need the per-example statistics: build_model_fn.per_example is False")
    append_record(eval_dir, record, lambda line: print(line, file=stream, flush=True))
    write_per_example(eval_dir, eval_result, checkpoint_path, task.per_example_score, task.worst_is_lowest, examples)
    print(format_table(record), file=stream, flush=True)
    if "slices" in record:
        metric = task.headline
        print(slices.table(record["slices"], metric, task.higher_is_better(metric)), file=stream, flush=True)
    return record


def compute_slices(kept: dict, task, slicing, source: str = "the evaluation") -> dict:
    """The slices of `slicing` (`metrics.slices.Slicing`) of a read statistics file's examples."""
    masks = slice_masks(kept, task, slicing, source)
    return slices.compute(kept["statistics"], task.from_sums, masks, slicing.min_size)


def slice_masks(kept: dict, task, slicing, source: str = "the evaluation") -> dict:
    """`{slice: bool [N]}` of `slicing`'s specs over a read statistics file's examples."""
    examples = slices.Examples(
        kept["filenames"],
        kept.get("image_sizes"),
        task.label_counts(kept["statistics"]),
        task.class_names,
        task.dense_labels,
        slicing.metadata_rows(),
        source,
    )
    masks = {}
    for spec in slicing.slice_by:
        masks.update(examples.slices(spec))
    return masks


def interval_table(record: dict) -> str:
    """The intervals as a markdown table (TensorBoard's text tab)."""
    lines = [
        f"95% bootstrap intervals ({bootstrap.NUM_RESAMPLES} resamples of the {record['num_examples']} examples)",
        "",
        "| metric | value | low | high |",
        "|---|---|---|---|",
    ]
    for key, interval in record["ci"].items():
        prefix, _, name = key.partition("/")
        value = record["per_class"].get(name, {}).get(prefix) if name else record["metrics"].get(key)
        lines.append(f"| {key} | {_cell(value).strip()} | {interval['low']:.4f} | {interval['high']:.4f} |")
    return "\n".join(lines)


def slice_table(sliced: dict) -> str:
    """The slices as a markdown table (TensorBoard's text tab): each scalar metric."""
    metrics = sorted({key for value in sliced.values() for key in value.get("metrics", {}) if "/" not in key})
    lines = ["| slice | examples | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
    for name, value in sliced.items():
        if value.get("too_small"):
            cells = ["too small"] * len(metrics)
        else:
            cells = [_cell(value["metrics"].get(key)).strip() + _interval(value, key) for key in metrics]
        lines.append(f"| {name} | {value['num_examples']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_interval_summary(eval_dir: str, record: dict):
    """The intervals (and slices) in TensorBoard's text tab, and one scalar per slice and
    metric, in the evaluation's own event file."""
    summary = tf.compat.v1.Summary()
    value = summary.value.add(tag="confidence_intervals")
    value.metadata.plugin_data.plugin_name = "text"  # TensorBoard's text tab.
    value.tensor.CopyFrom(tf.make_tensor_proto(interval_table(record)))
    for name, sliced in record.get("slices", {}).items():
        for metric, number in sliced.get("metrics", {}).items():
            if number is not None and "/" not in metric:  # One scalar per slice and headline-level metric.
                summary.value.add(tag=f"slices/{name}/{metric}", simple_value=float(number))
    if record.get("slices"):
        value = summary.value.add(tag="slices")
        value.metadata.plugin_data.plugin_name = "text"
        value.tensor.CopyFrom(tf.make_tensor_proto(slice_table(record["slices"])))
    writer = tf.compat.v1.summary.FileWriterCache.get(eval_dir)
    writer.add_summary(summary, record["global_step"])
    writer.flush()


def read_records(eval_dir: str, log=print) -> list:
    """All records of `eval_dir/results.jsonl`, oldest first ([] if none).

    A torn or corrupt line (a full disk or a kill while an older version appended) never
    stops a run: the file is moved to `torn/` with one line, and the whole records are
    written back (where the folder is writable; read-only, they are only returned).
    """
    path = os.path.join(eval_dir, RESULTS_FILE)
    try:
        with open(path) as f:
            lines = [line for line in f.read().splitlines() if line.strip()]
    except FileNotFoundError:
        return []
    records, bad = [], 0
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict) and "global_step" in record:
            records.append(record)
        else:
            bad += 1
    if bad and os.access(eval_dir, os.W_OK):
        files.move_aside(path, f"{bad} unreadable line(s); kept its {len(records)} whole record(s)", log)
        files.write_atomic(path, "".join(json.dumps(record, allow_nan=False) + "\n" for record in records))
    return records


def _cell(value):
    return "   n/a" if value is None else f"{value:6.4f}"


def _interval(record: dict, key: str) -> str:
    interval = record.get("ci", {}).get(key)
    return f" [{interval['low']:.4f}, {interval['high']:.4f}]" if interval else ""


def format_table(record: dict) -> str:
    """A compact text table: headline metrics, then one row per class (if the task has any),
    each followed by its 95% bootstrap interval where the record has one."""
    metrics = record["metrics"]
    head = [f"eval @ step {record['global_step']}  ({record['num_examples']} examples)"]
    head.append(
        "  ".join(f"{key} {_cell(metrics[key])}{_interval(record, key)}" for key in sorted(metrics) if key != "loss")
    )
    if "loss" in metrics:
        head[-1] = f"loss {_cell(metrics['loss'])}  " + head[-1]
    keys = list(dict.fromkeys(key for values in record["per_class"].values() for key in values))
    if not keys:
        return "\n".join(head)
    width = max([len(name) for name in record["per_class"]] + [5])
    intervals = record.get("ci", {})
    with_interval = [key for key in keys if any(f"{key}/{name}" in intervals for name in record["per_class"])]
    rows = [f"  {'class':<{width}}  " + "  ".join(f"{key:>6}" for key in keys)]
    rows[0] += "".join(f"  {key + ' 95% interval':>18}" for key in with_interval)
    for name, values in record["per_class"].items():
        row = f"  {name:<{width}}  " + "  ".join(_cell(values.get(key)) for key in keys)
        row += "".join(f"  {_interval(record, f'{key}/{name}') or ' n/a':>18}" for key in with_interval)
        rows.append(row)
    return "\n".join(head + rows)


class ResultsReporter(tf.estimator.Exporter):
    """An Exporter that exports nothing: it records and prints each evaluation.

    `train_and_evaluate` hands every evaluation's result to its exporters, so this
    is the one place that sees every result with its checkpoint; the other
    evaluation paths (`core/evaluation.py`) call the same reporters.
    """

    def __init__(self, eval_dir: str, task, stream=None, expected_examples=None, examples=None, slicing=None):
        self._eval_dir = eval_dir
        self._examples, self._slicing = examples, slicing
        self._task = task
        self._stream = stream or sys.stdout
        self._expected_examples = expected_examples
        self.last_record = None  # The record of the latest evaluation it reported.

    @property
    def name(self):
        return "results"

    def export(self, estimator, export_path, checkpoint_path, eval_result, is_the_final_export):
        del estimator, export_path, is_the_final_export
        check_example_count(eval_result, self._expected_examples)
        self.last_record = report(
            self._eval_dir, eval_result, checkpoint_path, self._task, self._stream, self._examples, self._slicing
        )
        return None
