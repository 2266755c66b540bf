"""Benchmark: the template's Estimator training and evaluation against Keras on the same
network, and its TFRecord pipeline against the same batches held in memory.

configs/synthetic.gin as `make train` runs it (the default U-Net, 64x64 images, batch 16,
4 classes), on `datasets/synthetic/` (written first if missing), all in this process:

- `train_throughput_vs_keras`: steady-state training examples/s (steps `--warmup` to
  `--warmup + --steps`; the default warm-up, 130 steps, is past the first epoch's 125, which
  decodes every example once and keeps it: `make_input_fn.decoded_cache_mb`) of the
  template's Estimator (`core.estimator.Estimator`) with its model_fn and input_fn, over
  Keras `Model.fit` on the same U-Net object (a functional model of its layers), the
  same loss (the task's: cross-entropy over non-ignored pixels and the Dice term), Adam,
  batch and tf.data pipeline;
- `pipeline_vs_memory`: the same Estimator training fed from the TFRecords over fed
  from the same batches already decoded in memory (`Dataset.from_tensor_slices`);
  the three trainings take turns `--rounds` times and each figure is the median of its
  rounds (this machine's speed drifts by about 10% over minutes);
- `eval_throughput_vs_keras`: a full evaluation of the 400 val images, every metric and
  summary on (`Estimator.evaluate` of the checkpoint: restore, metrics, panels, event
  file), over Keras `Model.evaluate` with a `MeanIoU` metric over the same images,
  taking turns, the median of `--eval_calls` calls after a first one of each (Keras traces
  its function in its first call, the template's Estimator builds its EVAL graph and
  session in its own: `eval_first_call_s` gives both); and `eval_loop_vs_keras`, the same
  with Estimator's batches' loop alone (from its session's creation to the last batch).

Then the training input pipeline alone (`--sections=input`): CPU ms a batch with the decoded
cache and without it (`input_cpu_ms_per_batch`, `decoded_cache_cpu_ratio`); then what op
determinism costs (`determinism_cost_ratio`: the same Estimator training from
TFRecords, examples/s with `DETERMINISTIC = False` over with it on, taking turns three
times, the median of each); then mixed precision (`--sections=precision`: the same
Estimator training in `mixed_bfloat16` over float32, `bf16_speedup`, and over Keras `fit`
under the same policy, `train_throughput_vs_keras_bf16`; Keras' own bfloat16 factor,
`keras_bf16_speedup`; the same two in examples per CPU second, `bf16_cpu_speedup` and
`keras_bf16_cpu_speedup`, with each round's cores (CPU over wall seconds, `precision_cores`) and the
CPU's model and bfloat16 flags (`cpu`: AMX or AVX512-BF16);
one intra-op thread over the default in each precision,
`threads_vs_default_by_precision`; all taking turns `--rounds` times; a full evaluation in
each, `eval_bf16_speedup`); then what grows with the job
(`bench/growth.py`: start-up to the first step at three dataset sizes, a resume's cost at
10.9 epochs over 1.9, time per example as the dataset and the images grow), and the time
to quality: `train.py --gin_file=configs/synthetic.gin` (what `make train` runs) in a
fresh process, from its start to the first evaluation with mean IoU >= `--target`
(`time_to_target_miou_s`; stopped there), with its steps/s (the machine's speed that day),
in float32 and in mixed_bfloat16 (`time_to_target_miou_s_bf16`). `--sections=ops` (not in the
default list): a training step's op times by group in each precision (`op_bf16_speedup`).

Prints each measurement and, last, one JSON object with every figure.

    .venv/bin/python bench/train.py [--warmup=130] [--steps=100] [--rounds=3] [--eval_calls=9] [--target=0.95]
                                    [--sections=keras,input,determinism,precision,growth,target,ops]
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

from common import runtime
from core import speed

GIN_FILE = os.path.join(runtime.REPO_ROOT, "configs", "synthetic.gin")


def _keras_model(tf, network, task, height, width, learning_rate):
    from models.inference import normalise

    images = tf.keras.Input((height, width, 3), dtype=tf.uint8)
    logits = network(normalise(images), task.num_classes, training=None, seed=0)
    model = tf.keras.Model(images, tf.cast(logits, tf.float32))  # float32 out under a mixed policy too.
    ignore = task.ignore_label

    def loss(labels, logits):  # The task's own loss, as the model_fn's (the Dice term included).
        return task.loss(logits, tf.cast(labels, tf.int32))

    class MeanIoU(tf.keras.metrics.MeanIoU):
        def update_state(self, labels, logits, sample_weight=None):
            labels = tf.cast(labels, tf.int32)
            valid = tf.not_equal(labels, ignore)
            safe = tf.where(valid, labels, 0)
            return super().update_state(safe, tf.argmax(logits, -1), tf.cast(valid, tf.float32))

    model.compile(tf.keras.optimizers.Adam(learning_rate), loss=loss, metrics=[MeanIoU(task.num_classes)])
    return model


def _keras_rate(tf, model, data, warmup, steps, batch, cores=None):
    """Examples/s of Keras `Model.fit` between its `warmup`-th and `warmup + steps`-th step (its CPU
    cores, `speed.Rate.cores`, appended to the list `cores`)."""
    rate = speed.Rate(warmup, steps, batch)

    class Callback(tf.keras.callbacks.Callback):
        def on_train_batch_end(self, number, logs=None):
            if rate.step():
                self.model.stop_training = True

    model.fit(data, steps_per_epoch=warmup + steps + 1, epochs=1, callbacks=[Callback()], verbose=0)
    if cores is not None:
        cores.append(rate.cores)
    return rate.rate


def time_to_target(target: float, work: str, precision: str = "float32"):
    """Runs configs/synthetic.gin's training in a fresh process until an evaluation reaches
    mean IoU `target`: (seconds from its start to that evaluation's line or None, the
    last mean IoU, its last steps/s)."""
    command = [sys.executable, "train.py", f"--gin_file={GIN_FILE}", f"--model_dir={os.path.join(work, precision)}",
               f"--gin_param=PRECISION = {precision!r}"]  # fmt: skip
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=runtime.REPO_ROOT, stdout=subprocess.PIPE, text=True)
    reached, last, speed = None, None, None
    for line in process.stdout:
        if match := re.search(r"(\S+) steps/s", line):
            speed = float(match.group(1))
        if line.startswith("loss ") and (match := re.search(r"\bmean_iou (\S+)", line)):
            last = float(match.group(1))
            print(f"  {time.perf_counter() - started:6.1f} s: mean IoU {last:.4f}", flush=True)
            if last >= target:
                reached = time.perf_counter() - started
                process.terminate()
                break
    process.wait()
    return reached, last, speed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warmup", type=int, default=130)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--eval_calls", type=int, default=9)
    parser.add_argument("--sections", default="keras,input,determinism,precision,growth,target")
    args = parser.parse_args(argv)
    sections = set(args.sections.split(","))
    runtime.quiet()
    work = tempfile.mkdtemp(prefix="bench_train_")
    figures = _against_keras(args, work) if "keras" in sections else {}
    if "input" in sections:
        figures.update(_input_cost(args))
    if "determinism" in sections:
        figures.update(_determinism_cost(args, work))
    if "precision" in sections:
        figures.update(_precision(args, work))
    if "ops" in sections:
        figures.update(_op_times(work))
    if "growth" in sections:
        import growth  # bench/growth.py, beside this file.

        figures.update(growth.measure())
    if "target" in sections:
        for precision, suffix in (("float32", ""), ("mixed_bfloat16", "_bf16")):
            print(f"\nconfigs/synthetic.gin in {precision} until mean IoU {args.target}:", flush=True)
            reached, last, speed = time_to_target(args.target, work, precision)
            figures[f"time_to_target_miou_s{suffix}"] = reached and round(reached, 1)
            figures[f"target_run{suffix}"] = {"target": args.target, "last_mean_iou": last, "steps_per_s": speed}
    print(json.dumps(figures))


def _configured(gin_params=()):
    """configs/synthetic.gin parsed (its dataset written first if missing): `(model_fn,
    train input_fn, eval input_fn)` as train.py builds them."""
    from data import synthetic

    synthetic.prepare_for_config(GIN_FILE, runtime.REPO_ROOT)
    return speed.configured([GIN_FILE], gin_params)


def _precision(args, work):
    """mixed_bfloat16 against float32, taking turns `--rounds` times: the template's Estimator
    training (`bf16_speedup`), Keras `fit` under the same policy on the same network
    (`train_throughput_vs_keras_bf16`) and Keras' own factor (`keras_bf16_speedup`, what the
    hardware gives this network), one intra-op thread against the default in each precision
    (`threads_vs_default_by_precision`), and a full evaluation (`eval_bf16_speedup`)."""
    import gin
    import tensorflow as tf

    from models import precision

    model, flags = precision.cpu()  # AMX or AVX512-BF16: bfloat16's factor depends on which.
    print(f"CPU: {model or 'unknown'}, bfloat16 flags: {', '.join(flags) or 'none'}", flush=True)
    built = {policy: _configured([f"PRECISION = {policy!r}"]) for policy in ("float32", "mixed_bfloat16")}
    batch = gin.query_parameter("%TRAIN_BATCH_SIZE")
    height, width = gin.query_parameter("%IMAGE_HEIGHT"), gin.query_parameter("%IMAGE_WIDTH")
    network, task = gin.query_parameter("%NETWORK").scoped_configurable_fn(), built["float32"][0].task
    learning_rate = gin.query_parameter("build_model_fn.learning_rate")
    train_fn = built["float32"][1]
    keras_data = train_fn().map(lambda f, label: (f["image"], label))
    models = {}
    for policy in built:
        with precision.policy_scope(policy):  # Its layers take the policy as they are made.
            models[policy] = _keras_model(tf, network, task, height, width, learning_rate)
    one_thread = tf.compat.v1.ConfigProto(
        intra_op_parallelism_threads=1, inter_op_parallelism_threads=0, allow_soft_placement=True
    )
    runs = {f"keras_{policy}": (policy, None) for policy in built}
    runs.update({policy: (policy, None) for policy in built})
    runs.update({f"{policy}_intra_op_1": (policy, one_thread) for policy in built})
    rates, cores = {key: [] for key in runs}, {key: [] for key in runs}
    estimators = {}
    for number in range(args.rounds):
        for key, (policy, session_config) in runs.items():
            if key.startswith("keras_"):
                rates[key].append(
                    _keras_rate(tf, models[policy], keras_data, args.warmup, args.steps, batch, cores[key])
                )
                continue
            model_fn, train_input_fn, _ = built[policy]
            directory = os.path.join(work, f"precision_{key}_{number}")
            rate, estimator = speed.training_rate(
                model_fn, train_input_fn, directory, args.warmup, args.steps, batch, session_config, cores[key]
            )
            rates[key].append(rate)
            if session_config is None:
                estimators[policy] = estimator
        print(f"round {number + 1}: " + ", ".join(f"{key} {values[-1]:.1f} ({cores[key][-1]:.2f} cores)"
                                                  for key, values in rates.items())
              + " examples/s", flush=True)  # fmt: skip
    medians = {key: float(np.median(values)) for key, values in rates.items()}
    # Examples per CPU second: what each does with the CPU it gets, whatever share of the cores that is.
    per_cpu = {key: float(np.median([r / c for r, c in zip(rates[key], cores[key])])) for key in runs}
    seconds = {policy: [] for policy in built}
    for _ in range(args.eval_calls + 1):  # Taking turns; the first call of each builds its graph, not counted.
        for policy, estimator in estimators.items():
            started = time.perf_counter()
            estimator.evaluate(built[policy][2], name="bench_precision")
            seconds[policy].append(time.perf_counter() - started)
    evaluation = {policy: float(np.median(values[1:])) for policy, values in seconds.items()}
    print(f"evaluation: float32 {evaluation['float32']:.2f} s, bfloat16 {evaluation['mixed_bfloat16']:.2f} s a call",
          flush=True)  # fmt: skip
    return {
        "cpu": {"model": model, "bfloat16_flags": list(flags)},
        "bf16_speedup": round(medians["mixed_bfloat16"] / medians["float32"], 3),
        "train_throughput_vs_keras_bf16": round(medians["mixed_bfloat16"] / medians["keras_mixed_bfloat16"], 3),
        "keras_bf16_speedup": round(medians["keras_mixed_bfloat16"] / medians["keras_float32"], 3),
        "bf16_cpu_speedup": round(per_cpu["mixed_bfloat16"] / per_cpu["float32"], 3),
        "keras_bf16_cpu_speedup": round(per_cpu["keras_mixed_bfloat16"] / per_cpu["keras_float32"], 3),
        "precision_cores": {key: [round(value, 2) for value in values] for key, values in cores.items()},
        "threads_vs_default_by_precision": {
            policy: {"1,0": round(medians[f"{policy}_intra_op_1"] / medians[policy], 3)} for policy in built
        },
        "eval_bf16_speedup": round(evaluation["float32"] / evaluation["mixed_bfloat16"], 3),
        "precision_rounds": {key: [round(value, 1) for value in values] for key, values in rates.items()},
    }


OP_GROUPS = {  # Op type (oneDNN's `_MklNative...` names included) -> group.
    "convolutions": ("Conv2D",),
    "batch norm": ("BatchNorm",),
    "loss and softmax": ("Softmax", "OneHot", "CrossEntropy"),
    "optimizer": ("ApplyAdam", "AssignSub", "AssignAdd"),
    "casts": ("Cast",),
}


def _op_times(work, traced_steps=20, warmup=130):
    """Where a training step's time goes, by op group, in float32 and mixed_bfloat16: the
    summed op times (`RunMetadata` of `traced_steps` steps after `warmup`, past the first epoch
    as the other sections; FULL_TRACE; summed over threads, so more than the step's wall time)
    and each group's bfloat16 factor (`op_bf16_speedup`), on the cores this process has: which
    ops the bfloat16 factor comes from, and which stay as they were."""
    import gin
    import tensorflow as tf

    class Trace(tf.compat.v1.train.SessionRunHook):
        """Adds each traced step's op times, by group, to `totals` (ms a step)."""

        def __init__(self, totals):
            self.totals, self.count = totals, 0

        def before_run(self, context):
            self.count += 1
            if self.count > warmup:
                options = tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE)
                return tf.compat.v1.train.SessionRunArgs(None, options=options)
            return None

        def after_run(self, context, values):
            if self.count <= warmup:
                return
            for device in values.run_metadata.step_stats.dev_stats:
                for node in device.node_stats:
                    label = node.timeline_label.split(" = ")[-1].split("(")[0]
                    group = next((g for g, keys in OP_GROUPS.items() if any(k in label for k in keys)), "other")
                    self.totals[group] += (node.op_end_rel_micros - node.op_start_rel_micros) / 1e3 / traced_steps

    times = {}
    for policy in ("float32", "mixed_bfloat16"):
        model_fn, train_input_fn, _ = _configured([f"PRECISION = {policy!r}"])
        totals = dict.fromkeys([*OP_GROUPS, "other"], 0.0)
        batch, directory = gin.query_parameter("%TRAIN_BATCH_SIZE"), os.path.join(work, f"ops_{policy}")
        # The traced steps are the ones training_rate measures: it stops after them.
        speed.training_rate(model_fn, train_input_fn, directory, warmup, traced_steps, batch, hooks=[Trace(totals)])
        times[policy] = totals
        print(f"{policy}: op ms a step, " + ", ".join(f"{g} {t:.1f}" for g, t in totals.items())
              + f", all {sum(totals.values()):.1f}", flush=True)  # fmt: skip
    float32, bfloat16 = times["float32"], times["mixed_bfloat16"]
    speedups = {group: round(float32[group] / bfloat16[group], 3) for group in float32 if bfloat16[group]}
    speedups["all"] = round(sum(float32.values()) / sum(bfloat16.values()), 3)
    return {"op_ms_per_step": {p: {g: round(t, 2) for g, t in v.items()} for p, v in times.items()},
            "op_bf16_speedup": speedups}  # fmt: skip


def _input_cost(args):
    """The training input pipeline alone, as train.py builds it: this process's CPU ms a batch
    (every thread) with the decoded cache (`make_input_fn.decoded_cache_mb`, the default) and
    without it (0), taking turns `--rounds` times, each after `--warmup` batches (past the
    first epoch, which fills the cache): `input_cpu_ms_per_batch`, and
    `decoded_cache_cpu_ratio`, without over with."""
    import tensorflow as tf

    costs = {"cached": [], "decoding": []}
    for _ in range(args.rounds):
        for key, params in (("cached", []), ("decoding", ["train/make_input_fn.decoded_cache_mb = 0"])):
            _, input_fn, _ = _configured(params)
            with tf.Graph().as_default():
                batch = tf.compat.v1.data.make_one_shot_iterator(input_fn()).get_next()
                with tf.compat.v1.Session() as session:
                    for _ in range(args.warmup):
                        session.run(batch)
                    started = time.process_time()
                    for _ in range(args.steps):
                        session.run(batch)
                    costs[key].append((time.process_time() - started) / args.steps * 1e3)
    medians = {key: float(np.median(values)) for key, values in costs.items()}
    rounds = ", ".join(f"{key} {' '.join(f'{value:.2f}' for value in values)}" for key, values in costs.items())
    print(f"input pipeline alone, CPU ms a batch: {rounds}", flush=True)
    return {
        "input_cpu_ms_per_batch": {key: round(value, 2) for key, value in medians.items()},
        "decoded_cache_cpu_ratio": round(medians["decoding"] / medians["cached"], 2),
    }


def _determinism_cost(args, work):
    """Training examples/s without op determinism over with it, alternating on and off."""
    import gin

    from common import determinism

    model_fn, train_fn, _ = _configured()
    batch = gin.query_parameter("%TRAIN_BATCH_SIZE")
    rates, was = {True: [], False: []}, determinism.enabled()
    for repeat in range(3):
        for enabled in (True, False):
            determinism.configure(enabled)
            directory = os.path.join(work, f"determinism_{enabled}_{repeat}")
            rate, _ = speed.training_rate(model_fn, train_fn, directory, args.warmup, args.steps, batch)
            rates[enabled].append(rate)
            print(f"Estimator, op determinism {'on' if enabled else 'off'}: {rate:.1f} examples/s", flush=True)
    determinism.configure(was)  # The sections after this one run as they would without it.
    return {"determinism_cost_ratio": round(np.median(rates[False]) / np.median(rates[True]), 3)}


def _against_keras(args, work):
    """The three ratios against Keras and memory (the module's first list)."""
    import gin
    import tensorflow as tf

    model_fn, train_fn, eval_fn = _configured()
    batch = gin.query_parameter("%TRAIN_BATCH_SIZE")
    height, width = gin.query_parameter("%IMAGE_HEIGHT"), gin.query_parameter("%IMAGE_WIDTH")
    network, task = gin.query_parameter("%NETWORK").scoped_configurable_fn(), model_fn.task
    figures = {}

    # Keras traces its functions first: layers made in Estimator's graphs invalidate a Keras
    # model whose fit or evaluate is traced after them (its traced functions stay valid).
    learning_rate = gin.query_parameter("build_model_fn.learning_rate")  # Its peak, constant for Keras.
    model = _keras_model(tf, network, task, height, width, learning_rate)
    keras_data = train_fn().map(lambda f, label: (f["image"], label))
    num_val = eval_fn.num_examples
    keras_val = eval_fn().map(lambda f, label: (f["image"], label))
    model.evaluate(keras_val, verbose=0)  # Traced here; a warm-up, not counted.
    batches = list(train_fn().take(args.warmup + args.steps + 1).as_numpy_iterator())
    features = {key: np.stack([f[key] for f, _ in batches]) for key in batches[0][0]}
    labels = np.stack([label for _, label in batches])

    def memory_fn():
        return tf.data.Dataset.from_tensor_slices((features, labels)).repeat()

    def keras_fit():
        return _keras_rate(tf, model, keras_data, args.warmup, args.steps, batch)

    # Taking turns, `--rounds` times: this machine's speed drifts by about 10% over minutes,
    # so each figure is the median of its rounds, each measured next to the others.
    rates = {"keras": [], "records": [], "memory": []}
    estimator = None
    for number in range(args.rounds):
        rates["keras"].append(keras_fit())
        directory = os.path.join(work, f"records_{number}")
        rate, estimator = speed.training_rate(model_fn, train_fn, directory, args.warmup, args.steps, batch)
        rates["records"].append(rate)
        directory = os.path.join(work, f"memory_{number}")
        rates["memory"].append(speed.training_rate(model_fn, memory_fn, directory, args.warmup, args.steps, batch)[0])
        print(
            f"round {number + 1}: Keras fit {rates['keras'][-1]:.1f}, Estimator from TFRecords "
            f"{rates['records'][-1]:.1f}, from memory {rates['memory'][-1]:.1f} examples/s",
            flush=True,
        )
    keras_rate, estimator_rate, memory_rate = (float(np.median(rates[key])) for key in ("keras", "records", "memory"))
    print(
        f"medians: Keras fit {keras_rate:.1f}, Estimator from TFRecords {estimator_rate:.1f}, "
        f"the same batches from memory {memory_rate:.1f} examples/s",
        flush=True,
    )

    checkpoint = estimator.latest_checkpoint()

    class Timer(tf.compat.v1.train.SessionRunHook):
        """Times an evaluation's loop: from the session's creation to `end`."""

        def after_create_session(self, session, coord):
            self.started = time.perf_counter()

        def end(self, session):
            self.seconds = time.perf_counter() - self.started

    timer = Timer()
    keras_times, estimator_times, loops = [], [], []
    for _ in range(args.eval_calls + 1):  # The first call of each is a warm-up, not counted.
        started = time.perf_counter()
        model.evaluate(keras_val, verbose=0)
        keras_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        estimator.evaluate(eval_fn, checkpoint_path=checkpoint, name="bench", hooks=[timer])
        estimator_times.append(time.perf_counter() - started)
        loops.append(timer.seconds)
    estimator_seconds = float(np.median(estimator_times[1:]))
    figures["eval_first_call_s"] = {"keras": round(keras_times[0], 2), "estimator": round(estimator_times[0], 2)}
    keras_eval = num_val / float(np.median(keras_times[1:]))
    estimator_eval = num_val / estimator_seconds
    loop = float(np.median(loops[1:]))
    print(
        "evaluation seconds, round by round: Keras " + ", ".join(f"{t:.2f}" for t in keras_times[1:])
        + "; Estimator " + ", ".join(f"{t:.2f}" for t in estimator_times[1:]),
        flush=True,
    )  # fmt: skip
    print(f"Keras evaluate, MeanIoU: {keras_eval:.1f} examples/s", flush=True)
    print(
        f"Estimator evaluate, every metric and summary: {estimator_eval:.1f} examples/s "
        f"({estimator_seconds:.2f} s a call, {loop:.2f} s of it in the batches' loop)",
        flush=True,
    )
    figures["train_throughput_vs_keras"] = round(estimator_rate / keras_rate, 3)
    figures["pipeline_vs_memory"] = round(estimator_rate / memory_rate, 3)
    figures["eval_throughput_vs_keras"] = round(estimator_eval / keras_eval, 3)
    # Estimator's evaluation loop alone (from the session's creation to the end of the last
    # batch: no graph build, no session set-up) over Keras' whole evaluate().
    figures["eval_loop_vs_keras"] = round((num_val / loop) / keras_eval, 3)
    figures["rounds"] = {key: [round(value, 1) for value in values] for key, values in rates.items()}

    # Thread pools: TensorFlow's default (0: one thread per core in each pool) against
    # explicit sizes, the same training from TFRecords.
    threads = {}
    for intra, inter in ((1, 1), (1, 2), (2, 1), (2, 2)):
        session_config = tf.compat.v1.ConfigProto(
            intra_op_parallelism_threads=intra, inter_op_parallelism_threads=inter, allow_soft_placement=True
        )
        directory = os.path.join(work, f"threads_{intra}_{inter}")
        threads[f"{intra},{inter}"], _ = speed.training_rate(
            model_fn, train_fn, directory, args.warmup, args.steps, batch, session_config
        )
        print(f"Estimator, intra_op {intra}, inter_op {inter} threads: {threads[f'{intra},{inter}']:.1f} examples/s")
    figures["threads_vs_default"] = {key: round(value / estimator_rate, 3) for key, value in threads.items()}
    return figures


if __name__ == "__main__":
    main()
