"""Streaming metric ops: pure functions returning `{name: (value, update_op)}`.

State lives in local metric variables (collections LOCAL_VARIABLES and
METRIC_VARIABLES), so Estimator resets it at the start of every evaluation and
each metric is exact over the whole evaluation set, whatever the batch size.
"""

from metrics.segmentation import segmentation_metrics, streaming_confusion_matrix

__all__ = ["segmentation_metrics", "streaming_confusion_matrix"]
