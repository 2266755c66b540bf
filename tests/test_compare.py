"""tools/compare.py, paired comparison of two evaluations from their statistics files, and the
best-checkpoint rules that use it (core/best.py)."""

import os

import numpy as np
import pytest

from common.errors import ConfigError
from core import results
from core.best import BetterByMargin, SignificantlyBetter
from metrics import bootstrap
from models.regression import Regression
from models.segmentation import Segmentation
from tools import compare

NAMES = ["background", "thing"]


def _write(eval_dir, step, confusion, task=None, filenames=None, index=None):
    eval_dir.mkdir(parents=True, exist_ok=True)
    index = np.arange(len(confusion)) if index is None else np.asarray(index)
    names = filenames or [f"img_{i}.png" for i in range(len(confusion))]
    results.write_statistics(
        str(eval_dir),
        step,
        f"model.ckpt-{step}",
        index,
        {"confusion": np.asarray(confusion, np.float64).reshape(len(confusion), -1)},
        task or Segmentation(2, NAMES),
        {int(i): (names[k], 32, 32) for k, i in enumerate(index)},  # (file name, height, width) by index.
    )


def _examples(rng, count, error_rate):
    """Per-example 2x2 confusion counts: 100 background and 30 thing pixels, each wrong at
    `error_rate` (per example, drawn around it)."""
    rates = np.clip(rng.normal(error_rate, 0.05, count), 0, 1)
    wrong_bg, wrong_thing = rng.binomial(100, rates), rng.binomial(30, rates)
    return np.stack([100 - wrong_bg, wrong_bg, wrong_thing, 30 - wrong_thing], 1).reshape(count, 2, 2)


def test_an_evaluation_against_itself_differs_by_exactly_zero(tmp_path, capsys):
    _write(tmp_path / "eval", 500, _examples(np.random.default_rng(0), 60, 0.1))
    assert compare.main([str(tmp_path / "eval"), str(tmp_path)]) == 0  # A model dir reads its eval/.
    out = capsys.readouterr().out
    assert "no significant difference: mean_iou +0.0000 [+0.0000, +0.0000]" in out
    assert "python evaluate.py" in out and "--checkpoint=model.ckpt-500" in out


def test_a_better_checkpoint_is_named_better_with_its_paired_interval(tmp_path, capsys):
    rng = np.random.default_rng(1)
    first = _examples(rng, 80, 0.2)
    last = first.copy()  # The same examples, every one with 6 fewer thing pixels missed.
    fixed = np.minimum(last[:, 1, 0], 6)
    last[:, 1, 0] -= fixed
    last[:, 1, 1] += fixed
    _write(tmp_path / "eval", 100, first)
    _write(tmp_path / "eval", 900, last)
    a, b = compare.load(f"{tmp_path}/eval@100"), compare.load(f"{tmp_path}/eval")
    compared = compare.compare(a, b)
    value = compared["mean_iou"]
    assert 0 < value["low"] < value["difference"] < value["high"]
    assert compare.main([f"{tmp_path}/eval@100", f"{tmp_path}/eval@900", "--top=3"]) == 0
    out = capsys.readouterr().out
    assert "B is better: mean_iou +" in out
    assert out.count("  index ") == 3
    # Reversed, the same evidence says the other side is worse.
    assert compare.verdict("mean_iou", compare.compare(b, a)["mean_iou"], True).startswith("B is worse")


def test_lower_is_better_metrics_read_the_other_way():
    value = {"difference": -0.5, "low": -0.7, "high": -0.3}
    assert compare.verdict("rmse", value, Regression(1).higher_is_better("rmse")).startswith("B is better")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"index": [0, 1, 2, 4]}, "not evaluations of the same examples: index 3 is in one only"),
        ({"filenames": ["img_0.png", "img_1.png", "other.png", "img_3.png"]}, "example 2 is 'img_2.png' in one"),
        ({"task": Segmentation(2, ["bg", "fg"])}, "different tasks or classes"),
    ],
)
def test_evaluations_of_different_examples_are_refused_in_one_line(tmp_path, capsys, change, message):
    confusion = _examples(np.random.default_rng(2), 4, 0.1)
    _write(tmp_path / "a", 1, confusion)
    _write(tmp_path / "b", 1, confusion, **change)
    assert compare.main([str(tmp_path / "a"), str(tmp_path / "b")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1


def test_missing_evaluations_are_named(tmp_path, capsys):
    _write(tmp_path / "eval", 5, _examples(np.random.default_rng(3), 3, 0.1))
    for name, message in [
        (f"{tmp_path}/eval@6", "no evaluation of step 6 in"),
        (f"{tmp_path}/nothing", "no such directory"),
        (str(tmp_path / "empty"), "no evaluation with per-example statistics"),
    ]:
        (tmp_path / "empty").mkdir(exist_ok=True)
        assert compare.main([name, f"{tmp_path}/eval"]) == 1
        assert message in capsys.readouterr().err


def _keeper_run(tmp_path, rule, evaluations):
    """Runs BestCheckpointKeeper over `(step, confusion)` evaluations written like a training
    run's (statistics file, fake checkpoint files); returns the best step after each."""
    from core.best import BestCheckpointKeeper

    keeper = BestCheckpointKeeper(str(tmp_path), "mean_iou", True, stream=open(os.devnull, "w"), rule=rule)
    task, kept = Segmentation(2, NAMES), []
    for step, confusion in evaluations:
        _write(tmp_path / "eval", step, confusion)
        checkpoint = tmp_path / f"model.ckpt-{step}"
        for suffix in (".index", ".data-00000-of-00001"):
            (tmp_path / (checkpoint.name + suffix)).write_bytes(b"x")
        flat = {"confusion": np.asarray(confusion, np.float64).reshape(len(confusion), -1)}
        value = task.from_sums(bootstrap.totals(flat))["mean_iou"][0]
        keeper.export(None, None, str(checkpoint), {"mean_iou": value, "global_step": step}, False)
        kept.append(keeper._best_step)
    return kept


def _improved(confusion, pixels):
    better = confusion.copy()
    fixed = np.minimum(better[:, 1, 0], pixels)
    better[:, 1, 0] -= fixed
    better[:, 1, 1] += fixed
    return better


def test_best_rules_keep_the_best_unless_beaten_by_a_margin_or_significantly(tmp_path):
    rng = np.random.default_rng(5)
    first = _examples(rng, 80, 0.2)
    lucky = first.copy()  # Two examples happen to be better, one worse: a higher mean IoU by luck.
    lucky[:2] = _improved(first[:2], 10)
    lucky[2, 1, 1], lucky[2, 1, 0] = lucky[2, 1, 1] - 2, lucky[2, 1, 0] + 2
    consistent = _improved(first, 4)  # Every example a little better.
    evaluations = [(100, first), (200, lucky), (300, consistent)]
    assert _keeper_run(tmp_path / "any", None, evaluations) == [100, 200, 300]
    assert _keeper_run(tmp_path / "significant", SignificantlyBetter(), evaluations) == [100, 100, 300]
    assert _keeper_run(tmp_path / "margin", BetterByMargin(0.5), evaluations) == [100, 100, 100]
    with pytest.raises(ConfigError, match="margin must be >= 0"):
        BetterByMargin(-1)
