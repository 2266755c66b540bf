"""One error model: a user error is one line and exit 1 from every program; a bug keeps
its traceback. Gin is strict in every root, at parse time."""

import pytest

from common.errors import ConfigError, DataError
from core import cli
from tests.conftest import tiny_gin_params
from tests.helpers import run_script


def test_user_error_is_one_line_and_exit_1(capsys):
    def main(argv):
        raise DataError("shard.tfrecord: record 3 is corrupt\nmore detail")

    assert cli.call(main, ["prog"]) == 1
    assert capsys.readouterr().err == "error: shard.tfrecord: record 3 is corrupt\n"


@pytest.mark.parametrize("bug", [KeyError("x"), RuntimeError("y"), ValueError("z"), TypeError("w")])
def test_a_bug_is_not_swallowed(bug):
    def main(argv):
        raise bug

    with pytest.raises(type(bug)):
        cli.call(main, ["prog"])


def test_success_is_exit_0():
    assert cli.call(lambda argv: None, ["prog"]) == 0


def _one_line_exit_1(result, *needles):
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize(
    "binding, needle",
    [
        ("evaluate.zz_misspelled = 1", "Configurable 'evaluate' doesn't have a parameter named 'zz_misspelled'"),
        ("train_and_evaluate.zz_misspelled = 1", "zz_misspelled"),
        ("unet.zz_misspelled = 1", "zz_misspelled"),
        ("deeplab.zz_misspelled = 1", "zz_misspelled"),
        ("classification.zz_misspelled = 1", "zz_misspelled"),
        ("flip_left_right.zz_misspelled = 1", "zz_misspelled"),
        ("per_class_logging.zz_misspelled = 1", "zz_misspelled"),
        ("zz_unknown.x = 1", "No configurable matching 'zz_unknown'"),
        ("IMAGE_WIDTH = %gin.REQUIRED", "macro(s) IMAGE_WIDTH not set"),
    ],
)
def test_a_misspelled_binding_under_any_root_fails_at_parse_time(binding, needle):
    import gin

    from core import configurables

    gin.clear_config()
    try:
        with pytest.raises(ConfigError) as raised:
            configurables.parse_gin(["configs/synthetic.gin"], [binding])
    finally:
        gin.clear_config()
    assert needle in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.slow
@pytest.mark.parametrize(
    "script, binding, needle",
    [
        ("train.py", "evaluate.zz_misspelled = 1", "zz_misspelled"),
        ("evaluate.py", "build_model_fn.zz_misspelled = 1", "zz_misspelled"),
        ("tools/export.py", "segmentation.zz_misspelled = 1", "zz_misspelled"),
        ("train.py", "NUM_CLASSES = 5", "CLASS_NAMES and NUM_CLASSES differ"),
    ],
)
def test_every_program_reports_a_config_mistake_in_one_line(tiny_dataset, tmp_path, script, binding, needle):
    args = ["--gin_file=configs/synthetic.gin", f"--model_dir={tmp_path / 'model'}"]
    args += [f"--gin_param={p}" for p in tiny_gin_params(tiny_dataset)] + [f"--gin_param={binding}"]
    if script == "tools/export.py":
        args.append(f"--export_dir={tmp_path / 'export'}")
    # A fresh interpreter: the one line is all it prints, from its start-up on.
    _one_line_exit_1(run_script(script, *args, check=False, fresh=True), needle)
    assert not (tmp_path / "model").exists()


@pytest.mark.slow
def test_predict_and_build_tfrecords_report_bad_paths_in_one_line(tmp_path):
    result = run_script(
        "tools/predict.py",
        f"--saved_model={tmp_path}/none",
        f"--output_dir={tmp_path}/o",
        "a.png",
        check=False,
        fresh=True,
    )
    _one_line_exit_1(result, f"{tmp_path}/none")
    result = run_script(
        "tools/build_tfrecords.py",
        f"--image_dir={tmp_path}/no",
        f"--mask_dir={tmp_path}",
        "--output_prefix=x",
        check=False,
        fresh=True,
    )
    _one_line_exit_1(result, "is not a folder")


def test_config_error_is_a_user_error():
    assert issubclass(ConfigError, cli.UserError)


def test_tensorflow_errors_keep_their_cause_and_verbose_shows_the_whole_message(capsys, monkeypatch):
    """TensorFlow 2.15 puts "Graph execution error:" first and the cause below it: the one
    line is the cause; --verbose prints TensorFlow's whole message above it."""
    import tensorflow as tf

    from common.errors import reported
    from core import cli

    message = "Graph execution error:\n\nsave/SaveV2: No space left on device\n\t [[{{node save/SaveV2}}]]"

    def main(argv):
        with reported():
            raise tf.errors.ResourceExhaustedError(None, None, message)

    monkeypatch.setattr(cli, "_verbose", False)
    assert cli.call(main, []) == 1
    assert capsys.readouterr().err == "error: save/SaveV2: No space left on device\n"
    monkeypatch.setattr(cli, "_verbose", True)
    assert cli.call(main, []) == 1
    err = capsys.readouterr().err
    assert "[[{{node save/SaveV2}}]]" in err and err.endswith("error: save/SaveV2: No space left on device\n")


def test_a_full_disk_outside_tensorflow_is_one_line_and_a_bug_keeps_its_traceback(capsys):
    import errno

    from core import cli

    def full(argv):
        raise OSError(errno.ENOSPC, "No space left on device", "runs/x/eval/results.jsonl")

    assert cli.call(full, []) == 1
    assert capsys.readouterr().err == "error: runs/x/eval/results.jsonl: No space left on device\n"

    def bug(argv):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", "a_path_the_code_got_wrong")

    with pytest.raises(FileNotFoundError):
        cli.call(bug, [])


def test_a_full_disk_inside_a_gin_configurable_is_one_line(capsys):
    """gin re-raises an OSError from inside a configurable as a copy without its errno: the
    full disk is still one line, not a traceback (seen once in the full-disk test)."""
    import errno

    import gin

    from core import cli

    def fill():
        raise OSError(errno.ENOSPC, "No space left on device", "/models/run/model.ckpt-3.index")

    configurable = gin.external_configurable(fill, "test_cli_fill_the_disk")
    assert cli.call(lambda argv: configurable(), []) == 1
    assert capsys.readouterr().err.splitlines() == ["error: /models/run/model.ckpt-3.index: No space left on device"]


def test_a_full_disk_under_tensorflow_s_event_writer_is_one_line(capsys):
    """TensorBoard's event writer raises a RuntimeError "<file>; No space left on device"
    (its flush thread's error, re-raised at the next flush: the full-disk test's CI run
    saw it as a traceback when the disk filled during an evaluation); another RuntimeError
    is a bug and keeps its traceback."""
    import gin

    from core import cli

    def flush():
        raise RuntimeError(
            "/models/run/eval/events.out.tfevents.1.vm; No space left on device\n"
            "\tFailed to flush 1 events to /models/run/eval/events.out.tfevents.1.vm"
        )

    configurable = gin.external_configurable(flush, "test_cli_flush_to_a_full_disk")
    assert cli.call(lambda argv: configurable(), []) == 1
    assert capsys.readouterr().err.splitlines() == [
        "error: /models/run/eval/events.out.tfevents.1.vm: No space left on device"
    ]

    def bug(argv):
        raise RuntimeError("dictionary changed size during iteration")

    with pytest.raises(RuntimeError):
        cli.call(bug, [])
