"""Benchmark: the streaming confusion-matrix update against its peers, in one process.

21 classes, labels and predictions of 8x256x256 (10% of the labels ignored), on CPU:
  - ours: `metrics.streaming_confusion_matrix` (one bincount over label*C + prediction);
  - `tf.compat.v1.metrics.mean_iou` (a scatter-based confusion matrix);
  - the per-class loop: `tf.equal` per class, `reduce_sum` of intersection and union;
  - the floor: reading the two tensors once (one reduction over each).

The inputs are variables, so every run really reads them. Each op is timed over
blocks of repeated `session.run` calls, the ops taking turns; the figure is the
median (see `time_interleaved`). The last line is one JSON
object with `speedup_vs_tf_v1_mean_iou` and `ratio_to_read_floor`.

    .venv/bin/python bench/metric_update.py [--rounds=10]
"""

import argparse
import json
import statistics
import time

from common import runtime

NUM_CLASSES = 21
SHAPE = (8, 256, 256)


def time_interleaved(session, ops: dict, rounds: int, block: int = 10) -> dict:
    """Median seconds per `session.run` of each op.

    Each op runs `block` times in a row (so it is timed warm, in its own steady
    state), and the ops take turns for `rounds` rounds, which spreads the machine's
    drift (frequency, other processes) evenly over them.
    """
    times = {name: [] for name in ops}
    for _ in range(rounds):
        for name, op in ops.items():
            session.run(op)  # Warm-up after the other ops.
            for _ in range(block):
                start = time.perf_counter()
                session.run(op)
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args(argv)
    runtime.quiet()
    import numpy as np
    import tensorflow as tf

    from metrics import streaming_confusion_matrix

    rng = np.random.default_rng(0)
    labels_np = rng.integers(0, NUM_CLASSES, SHAPE).astype(np.int32)
    predictions_np = np.where(rng.random(SHAPE) < 0.7, labels_np, rng.integers(0, NUM_CLASSES, SHAPE)).astype(np.int32)
    labels_np[rng.random(SHAPE) < 0.1] = 255

    with tf.Graph().as_default():
        labels = tf.Variable(labels_np, trainable=False)
        predictions = tf.Variable(predictions_np, trainable=False)
        label_values, prediction_values = labels.read_value(), predictions.read_value()
        valid = tf.not_equal(label_values, 255)

        _, ours = streaming_confusion_matrix(label_values, prediction_values, NUM_CLASSES)
        _, v1_mean_iou = tf.compat.v1.metrics.mean_iou(
            tf.where(valid, label_values, 0), prediction_values, NUM_CLASSES, weights=tf.cast(valid, tf.float32)
        )
        intersections, unions = [], []
        for c in range(NUM_CLASSES):
            is_label = tf.equal(label_values, c)
            is_prediction = tf.equal(prediction_values, c) & valid
            intersections.append(tf.reduce_sum(tf.cast(is_label & is_prediction, tf.int64)))
            unions.append(tf.reduce_sum(tf.cast(is_label | is_prediction, tf.int64)))
        loop_totals = tf.Variable(tf.zeros([2, NUM_CLASSES], tf.int64), trainable=False)
        per_class_loop = loop_totals.assign_add(tf.stack([tf.stack(intersections), tf.stack(unions)]))
        read_floor = tf.reduce_max(label_values) + tf.reduce_max(prediction_values)

        with tf.compat.v1.Session() as session:
            session.run([tf.compat.v1.global_variables_initializer(), tf.compat.v1.local_variables_initializer()])
            ops = {"ours": ours, "tf_v1_mean_iou": v1_mean_iou, "per_class_loop": per_class_loop}
            ops["read_floor"] = read_floor
            seconds = time_interleaved(session, ops, args.rounds)
    for name, value in seconds.items():
        print(f"{name:>16}: {value * 1e3:8.2f} ms per 8x256x256 update")
    figures = {
        "speedup_vs_tf_v1_mean_iou": round(seconds["tf_v1_mean_iou"] / seconds["ours"], 2),
        "speedup_vs_per_class_loop": round(seconds["per_class_loop"] / seconds["ours"], 2),
        "ratio_to_read_floor": round(seconds["ours"] / seconds["read_floor"], 2),
        "ms": {name: round(value * 1e3, 3) for name, value in seconds.items()},
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
