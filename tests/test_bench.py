"""The benchmarks run and end with the JSON line the README quotes (figures not checked)."""

import json

import pytest

from tests.helpers import run_script


@pytest.mark.slow
def test_metrics_benchmark_prints_its_figures():
    result = run_script("bench/metric_update.py", "--rounds=1")
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"speedup_vs_tf_v1_mean_iou", "ratio_to_read_floor"} <= set(figures)
    assert figures["speedup_vs_tf_v1_mean_iou"] > 1  # Faster than the scatter-based peer at all.
