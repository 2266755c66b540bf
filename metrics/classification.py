"""Classification metrics: exact over the whole evaluation set, binary and multi-class.

Precision, recall and F-beta come from a streaming confusion matrix; ROC AUC is
exact (it keeps every score, 8 bytes each, and sorts them at the end, with ties
counted half as in the Mann-Whitney U statistic); means are float64 sums.

Usage:

    # Multi-class: labels int [N], probabilities float [N, K].
    ops = classification_metrics(labels, probabilities, num_classes=K, beta=2.0, top_k=(1, 5))
    # {"accuracy", "precision", "recall", "f2", "roc_auc", "average_confidence",
    #  "precision_at_1", "precision_at_5", "precision/<class>", ...}: (value, update_op)

    # Binary: labels in {0, 1} [N], probability of the positive class [N].
    ops = binary_classification_metrics(labels, positive_probability, threshold=0.5)

Undefined values are NaN and left out of macro averages (scikit-learn's
`zero_division=np.nan`): the precision of a class never predicted, the recall of a
class that never occurs, the AUC of a class with no positives or no negatives.
"""

import tensorflow as tf

from metrics.confusion import fbeta_name, per_class_rates, streaming_confusion_matrix
from metrics.streaming import flat_mask, nanmean, safe_divide, streaming_concat, streaming_mean


def roc_auc(scores, positives):
    """Exact ROC AUC of 1-D `scores` for the bool `positives`; NaN without both classes.

    AUC = P(score of a random positive > score of a random negative), ties counting
    one half: computed from the counts of positives and negatives at each distinct
    score, in float64.
    """
    scores = tf.cast(scores, tf.float64)
    order = tf.argsort(scores)
    sorted_scores = tf.gather(scores, order)
    sorted_positive = tf.gather(tf.cast(positives, tf.float64), order)
    distinct, group = tf.unique(sorted_scores)
    groups = tf.size(distinct)
    positive_at = tf.math.unsorted_segment_sum(sorted_positive, group, groups)
    negative_at = tf.math.unsorted_segment_sum(1.0 - sorted_positive, group, groups)
    negatives_below = tf.cumsum(negative_at, exclusive=True)
    wins = tf.reduce_sum(positive_at * (negatives_below + 0.5 * negative_at))
    return safe_divide(wins, tf.reduce_sum(positive_at) * tf.reduce_sum(negative_at))


def precision_at_k(labels, probabilities, k: int, mask=None, name=None):
    """Mean over examples of |true labels among the top k| / k: `(value, update_op)`.

    For single-label data (`labels` int [N]) this is top-k accuracy divided by k,
    as `tf.compat.v1.metrics.precision_at_k` defines it; for multi-label data pass
    `labels` as a multi-hot [N, K] tensor.
    """
    _, top = tf.math.top_k(probabilities, k=k)
    num_classes = tf.shape(probabilities)[-1]
    if labels.shape.rank == probabilities.shape.rank:  # Multi-hot.
        relevant = tf.cast(labels, tf.float64)
    else:
        relevant = tf.one_hot(tf.cast(labels, tf.int32), num_classes, dtype=tf.float64)
    hits = tf.reduce_sum(tf.gather(relevant, top, batch_dims=1), axis=-1)
    return streaming_mean(hits / k, mask, name=name or f"precision_at_{k}")


def classification_metrics(
    labels,
    probabilities,
    num_classes: int,
    class_names=None,
    beta: float = 1.0,
    top_k=(),
    mask=None,
    auc: bool = True,
):
    """Multi-class metrics from integer labels and class probabilities.

    Args:
      labels: int [N] class ids in [0, num_classes).
      probabilities: float [N, num_classes] (rows need not sum to 1 for AUC and top-k).
      num_classes: K.
      class_names: names for the per-class values (default: class ids).
      beta: the beta of F-beta (1: F1; 2 weighs recall more; 0.5 precision).
      top_k: the k of each `precision_at_<k>` to report.
      mask: optional bool [N]: evaluate only where True.
      auc: include the one-vs-rest macro ROC AUC (keeps every score: N*K floats).

    Returns:
      `{name: (value, update_op)}`: `accuracy`, macro `precision`, `recall`,
      `f<beta>`, `roc_auc`, `average_confidence` (mean top probability),
      `precision_at_<k>`, per class `precision/<c>`, `recall/<c>`,
      `f<beta>/<c>`, `roc_auc/<c>`, and `confusion_matrix` (int64 [K, K], rows =
      ground truth).
    """
    class_names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
    f_name = fbeta_name(beta)
    predicted = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
    confusion, confusion_update = streaming_confusion_matrix(
        labels, predicted, num_classes, ignore_label=None, mask=mask, name="classification_confusion"
    )
    rates = per_class_rates(confusion, beta)
    confusion64 = tf.cast(confusion, tf.float64)
    ops = {
        "confusion_matrix": (confusion, confusion_update),
        "accuracy": (safe_divide(tf.linalg.trace(confusion64), tf.reduce_sum(confusion64)), confusion_update),
        "precision": (nanmean(rates["precision"]), confusion_update),
        "recall": (nanmean(rates["recall"]), confusion_update),
        f_name: (nanmean(rates["fbeta"]), confusion_update),
        "average_confidence": streaming_mean(tf.reduce_max(probabilities, axis=-1), mask, "average_confidence"),
    }
    for c, class_name in enumerate(class_names):
        ops[f"precision/{class_name}"] = (rates["precision"][c], confusion_update)
        ops[f"recall/{class_name}"] = (rates["recall"][c], confusion_update)
        ops[f"{f_name}/{class_name}"] = (rates["fbeta"][c], confusion_update)
    for k in top_k:
        ops[f"precision_at_{k}"] = precision_at_k(labels, probabilities, k, mask)
    if auc:
        all_labels, labels_update = streaming_concat(flat_mask(labels, mask), "auc_labels")
        kept = tf.reshape(flat_mask(probabilities, None if mask is None else _rows(mask, num_classes)), [-1])
        all_scores, scores_update = streaming_concat(kept, "auc_scores")
        update = tf.group(labels_update, scores_update)
        scores = tf.reshape(all_scores, [-1, num_classes])
        per_class = tf.stack([roc_auc(scores[:, c], tf.equal(all_labels, float(c))) for c in range(num_classes)])
        ops["roc_auc"] = (nanmean(per_class), update)
        for c, class_name in enumerate(class_names):
            ops[f"roc_auc/{class_name}"] = (per_class[c], update)
    return ops


def _rows(mask, num_classes):
    """Broadcasts a per-example mask [N] to [N, K]."""
    return tf.tile(tf.reshape(tf.cast(mask, tf.bool), [-1, 1]), [1, num_classes])


def binary_classification_metrics(labels, probabilities, threshold: float = 0.5, beta: float = 1.0, mask=None):
    """Binary metrics from 0/1 labels and the probability of the positive class.

    Args:
      labels: int or bool [N] (any shape), 1 = positive.
      probabilities: float, same shape: P(positive).
      threshold: predict positive when the probability is >= threshold.
      beta: the beta of F-beta.
      mask: optional bool, same shape: evaluate only where True.

    Returns:
      `{name: (value, update_op)}`: `accuracy`, `precision`, `recall`,
      `f<beta>` (of the positive class), `roc_auc` (exact), and
      `average_confidence` (mean of max(p, 1 - p)).
    """
    labels = tf.cast(labels, tf.int32)
    predicted = tf.cast(probabilities >= threshold, tf.int32)
    confusion, confusion_update = streaming_confusion_matrix(
        labels, predicted, 2, ignore_label=None, mask=mask, name="binary_confusion"
    )
    rates = per_class_rates(confusion, beta)
    confusion64 = tf.cast(confusion, tf.float64)
    all_labels, labels_update = streaming_concat(flat_mask(labels, mask), "auc_labels")
    all_scores, scores_update = streaming_concat(flat_mask(probabilities, mask), "auc_scores")
    confidence = tf.maximum(probabilities, 1.0 - probabilities)
    return {
        "accuracy": (safe_divide(tf.linalg.trace(confusion64), tf.reduce_sum(confusion64)), confusion_update),
        "precision": (rates["precision"][1], confusion_update),
        "recall": (rates["recall"][1], confusion_update),
        fbeta_name(beta): (rates["fbeta"][1], confusion_update),
        "roc_auc": (roc_auc(all_scores, tf.equal(all_labels, 1.0)), tf.group(labels_update, scores_update)),
        "average_confidence": streaming_mean(confidence, mask, "average_confidence"),
    }
