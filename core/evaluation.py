"""The evaluation root: one checkpoint, every checkpoint, continuously, or a subset.

Every evaluation goes through `tf.estimator.Estimator.evaluate` with an explicit
checkpoint, appends one line to its eval directory's `results.jsonl`, writes the
per-example CSV and prints a per-class table. `evaluate.py` parses flags and gin,
then calls `evaluate`.
"""

import hashlib
import os
import sys
import time

import gin.tf
import tensorflow as tf

from core import guard, results
from core.errors import describe, reported


class EvaluationError(RuntimeError):
    """An evaluation that cannot go on, with a message for the user."""


def eval_dir_name(eval_name) -> str:
    """Estimator's eval directory for a name: `eval` or `eval_<name>`."""
    return "eval" if not eval_name else f"eval_{eval_name}"


def subset_eval_name(indices) -> str:
    """A stable eval name for a subset, so different subsets never share results."""
    digest = hashlib.sha1(",".join(str(int(i)) for i in sorted(indices)).encode()).hexdigest()[:8]
    return f"subset_{len(indices)}_{digest}"


def list_checkpoints(model_dir: str) -> list:
    """The model directory's checkpoints that still exist, in step order."""
    return [path for path in guard.listed_checkpoints(model_dir) if tf.io.gfile.exists(path + ".index")]


def evaluate(
    model_dir: str,
    model_fn_builder,
    input_fn_builder,
    class_names,
    checkpoint: str = None,
    all_checkpoints: bool = False,
    continuous: bool = False,
    timeout_secs: float = 600,
    final_step: int = None,
    subset=None,
    eval_name: str = None,
    worst_k: int = 0,
    summary_indices=(),
    stream=None,
):
    """Evaluates checkpoints of `model_dir`; returns the list of results records.

    Args:
      model_dir: the training's model directory.
      model_fn_builder: `build_model_fn`, called with `summary_indices=...`.
      input_fn_builder: `make_input_fn` for the evaluation split, called with
        `subset=...`.
      class_names: names for the per-class table.
      checkpoint: evaluate this checkpoint (default: the latest).
      all_checkpoints: evaluate every checkpoint in step order, skipping those
        already in this eval directory's results.jsonl (a backfill that resumes).
      continuous: evaluate each new checkpoint as it appears, until `final_step`
        is evaluated or `timeout_secs` pass with no new checkpoint.
      timeout_secs: see `continuous`.
      final_step: the training's last step (`TRAIN_STEPS`).
      subset: example indices (list, "3,17,42" or "@file") to evaluate alone,
        under an eval name of their own.
      eval_name: the eval directory is `eval_<name>`; default `eval`, or
        `subset_<n>_<hash>` for a subset, `worst_<k>` for `worst_k`.
      worst_k: evaluate (and show in TensorBoard) the K examples with the lowest
        mean IoU in the latest per-example CSV of the default eval directory, at
        that evaluation's checkpoint.
      summary_indices: examples shown in TensorBoard in a full evaluation (a
        subset evaluation shows its own examples, up to 64).
      stream: where tables and messages go (default stdout).

    Raises:
      EvaluationError: no checkpoint, or continuous evaluation timed out before
        `final_step`.
    """
    from data.input import parse_subset

    stream = stream or sys.stdout
    if sum(bool(x) for x in (checkpoint, all_checkpoints, continuous, worst_k)) > 1:
        raise EvaluationError("choose one of --checkpoint, --all_checkpoints, --continuous, --worst_k")
    indices = parse_subset(subset)
    if worst_k:
        checkpoint, indices = _worst_examples(model_dir, worst_k)
        eval_name = eval_name or f"worst_{worst_k}"
    if indices is not None:
        eval_name = eval_name or subset_eval_name(indices)
        summary_indices = indices.tolist()[:64]
        print(f"evaluating {len(indices)} example(s) under eval name {eval_name!r}", file=stream)
    estimator = tf.estimator.Estimator(
        model_fn=model_fn_builder(summary_indices=list(summary_indices)), model_dir=model_dir
    )
    input_fn = input_fn_builder(subset=None if indices is None else indices.tolist())
    eval_dir = os.path.join(model_dir, eval_dir_name(eval_name))

    def run(path, checkpoint_name=None):
        """Evaluates `path`; the record names `checkpoint_name` (the original of a snapshot)."""
        # Evaluation is always strict: a bad record stops it, naming the file and record.
        with reported(getattr(input_fn, "files", []), EvaluationError):
            result = estimator.evaluate(
                input_fn,
                steps=None,
                checkpoint_path=path,
                name=eval_name,
                hooks=[gin.tf.GinConfigSaverHook(eval_dir, include_step_in_filename=False)],
            )
        results.check_example_count(result, getattr(input_fn, "num_examples", None))
        return results.report(eval_dir, result, checkpoint_name or path, class_names, stream)

    if continuous:
        return _continuous(model_dir, run, timeout_secs, final_step, stream, os.path.join(eval_dir, ".snapshot"))
    if all_checkpoints:
        done = {record["global_step"] for record in results.read_records(eval_dir)}
        paths = list_checkpoints(model_dir)
        if not paths:
            raise EvaluationError(f"no checkpoint in {model_dir}")
        todo = [p for p in paths if guard.step_of(p) not in done]
        print(f"{len(paths)} checkpoint(s), {len(paths) - len(todo)} already evaluated in {eval_dir}", file=stream)
        return [run(path) for path in todo]
    path = checkpoint or tf.train.latest_checkpoint(model_dir)
    if not path:
        raise EvaluationError(f"no checkpoint in {model_dir}")
    if not tf.io.gfile.exists(path + ".index"):
        raise EvaluationError(f"checkpoint {path} does not exist")
    return [run(path)]


def _continuous(model_dir, run, timeout_secs, final_step, stream, snapshot_dir):
    """Evaluates each new checkpoint through a private snapshot (see core/evaluator.py).

    A checkpoint the trainer deletes before it can be copied is skipped and logged.
    """
    from core.evaluator import snapshot

    records = []
    last_step = -1
    for path in tf.train.checkpoints_iterator(model_dir, min_interval_secs=1, timeout=timeout_secs):
        step = guard.step_of(path)
        if step <= last_step:
            continue
        last_step = step
        copy = snapshot(path, snapshot_dir)
        if copy is None:
            print(f"{path} was deleted before it could be read; skipped", file=stream, flush=True)
            continue
        records.append(run(copy, checkpoint_name=path))
        if final_step is not None and step >= final_step:
            print(f"evaluated the final step {step}; done.", file=stream)
            return records
    raise EvaluationError(
        f"no new checkpoint in {model_dir} for {timeout_secs:g} s (last evaluated step {last_step}, "
        f"final step {final_step}); stopping"
    )


def _worst_examples(model_dir: str, k: int):
    """`(checkpoint, indices)` of the k worst examples of the latest full evaluation."""
    import numpy as np

    path = results.latest_per_example(os.path.join(model_dir, "eval"))
    if path is None:
        raise EvaluationError(f"no per-example CSV in {model_dir}/eval: run a full evaluation first")
    checkpoint, rows = results.read_per_example(path)
    # The CSV names the checkpoint as it was written; the model directory may have moved.
    checkpoint = os.path.join(model_dir, os.path.basename(checkpoint))
    if not tf.io.gfile.exists(checkpoint + ".index"):
        raise EvaluationError(f"{path} was made from {checkpoint}, which no longer exists")
    return checkpoint, np.array(sorted(index for index, _ in rows[:k]), np.int64)


def evaluate_main(**kwargs) -> int:
    """`evaluate(**kwargs)` with errors turned into a one-line message and exit code 1."""
    start = time.time()
    try:
        records = evaluate(**kwargs)
    except (EvaluationError, ValueError, tf.errors.OpError, UnicodeDecodeError) as error:
        print(f"error: {describe(error)}", file=sys.stderr)
        return 1
    print(f"{len(records)} evaluation(s) in {time.time() - start:.0f}s", file=kwargs.get("stream") or sys.stdout)
    return 0
