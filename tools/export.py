"""Exports a trained checkpoint as a SavedModel for serving.

    python tools/export.py --gin_file=configs/synthetic.gin --model_dir=runs/synthetic \
        [--checkpoint=runs/synthetic/model.ckpt-1000] --export_dir=exports/synthetic

The SavedModel lands in a timestamped folder under `--export_dir` (Estimator's
layout, the one `LatestExporter` and TensorFlow Serving use); its path is printed (and the
devices and precision line to stderr).
Its `serving_default` signature takes `image` (uint8 [N, H, W, 3], H and W the
config's IMAGE_HEIGHT and IMAGE_WIDTH) and returns the task's serving outputs:
segmentation `classes` (int32 [N, H, W]) and `probabilities` (float32 [N, H, W, C]);
classification `classes` [N] and `probabilities` [N, K]; regression `predictions` [N, T].
"""

import sys

from absl import flags

from common import runtime
from common.errors import ModelDirError
from core import cli, configurables

FLAGS = flags.FLAGS


def resolve_checkpoint(model_dir: str, checkpoint=None) -> str:
    """The checkpoint to export: `checkpoint` if given, else the latest in `model_dir`.

    Raises:
      ModelDirError: no checkpoint in `model_dir`, or `checkpoint` does not exist.
    """
    import tensorflow as tf

    if checkpoint:
        # A checkpoint is a prefix, not a file: its `.index` file says it exists.
        if not tf.io.gfile.exists(checkpoint + ".index"):
            raise ModelDirError(f"checkpoint {checkpoint!r} not found (no {checkpoint}.index)")
        return checkpoint
    latest = tf.train.latest_checkpoint(model_dir) if tf.io.gfile.isdir(model_dir) else None
    if not latest:
        raise ModelDirError(f"no checkpoint in model_dir {model_dir!r}; train first or pass --checkpoint")
    return latest


def export(model_dir: str, export_dir: str, checkpoint=None, model_fn=None, image_size=None) -> str:
    """Writes a SavedModel of `checkpoint` (default: the latest in `model_dir`).

    With the defaults it needs gin parsed first (`common.runtime.parse_gin`): the
    model_fn comes from the configured `build_model_fn`, so the graph matches the
    one trained. The signature takes images of any size.

    Args:
      model_dir: the training run's model directory.
      export_dir: the SavedModel goes in a new timestamped folder under it.
      checkpoint: checkpoint path prefix to export; None for the latest in `model_dir`.
      model_fn: a plain model_fn; None to build it from gin.
      image_size: `(height, width)` to fix the serving input's size; None: any size.

    Returns:
      The path of the written SavedModel folder.

    Raises:
      ModelDirError: when there is no checkpoint to export.
    """
    import tensorflow as tf

    from models import serving

    checkpoint = resolve_checkpoint(model_dir, checkpoint)
    model_fn = model_fn or configurables.build_model_fn()
    estimator = tf.estimator.Estimator(model_fn, model_dir=model_dir)
    receiver_fn = serving.serving_input_receiver_fn(*(image_size or (None, None)))
    path = estimator.export_saved_model(export_dir, receiver_fn, checkpoint_path=checkpoint)
    # Estimator returns the path as bytes.
    return path.decode() if isinstance(path, bytes) else path


def main(argv):
    del argv
    model_dir = cli.init(FLAGS, report_to=sys.stderr).get("model_dir") or configurables.macro("MODEL_DIR")
    if not model_dir:
        raise ModelDirError("no model directory: pass --model_dir or set MODEL_DIR in the gin file")
    print(export(model_dir, FLAGS.export_dir, FLAGS.checkpoint))


def define_flags():
    """The command line (defined here, not at import, so `export()` imports anywhere)."""
    runtime.define_flags()  # --gin_file (the training's), --gin_param, --model_dir, --verbose.
    flags.DEFINE_string("checkpoint", None, "Checkpoint to export, e.g. D/model.ckpt-1000 (default: the latest in D).")
    flags.DEFINE_string("export_dir", None, "Folder under which the timestamped SavedModel folder is written.")
    flags.mark_flag_as_required("export_dir")


if __name__ == "__main__":
    define_flags()
    cli.run(main)
