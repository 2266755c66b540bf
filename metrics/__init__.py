"""Streaming metric ops: pure functions returning `{name: (value, update_op)}`.

State lives in local metric variables (collections LOCAL_VARIABLES and
METRIC_VARIABLES), so Estimator resets it at the start of every evaluation and
each metric is exact over the whole evaluation set, whatever the batch size.
Pass the dict (or a merge of several) as `EstimatorSpec.eval_metric_ops`.
"""

from metrics.classification import (
    binary_classification_metrics,
    classification_metrics,
    precision_at_k,
    roc_auc,
)
from metrics.confusion import streaming_confusion_matrix
from metrics.regression import regression_metrics
from metrics.segmentation import segmentation_metrics
from metrics.streaming import example_count, streaming_mean

__all__ = [
    "binary_classification_metrics",
    "classification_metrics",
    "example_count",
    "precision_at_k",
    "regression_metrics",
    "roc_auc",
    "segmentation_metrics",
    "streaming_confusion_matrix",
    "streaming_mean",
]
