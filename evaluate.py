"""Evaluates checkpoints: one, all, continuously, a subset, or the worst examples.

python evaluate.py --gin_file=configs/synthetic.gin --model_dir=runs/synthetic
    [--checkpoint=PATH | --all_checkpoints | --continuous --timeout_secs=S | --worst_k=K]
    [--subset=3,17,42 | --subset=@ids.txt] [--eval_name=N] [--eval_set=NAME]
    [--eval_scales=0.75,1,1.25] [--add_flipped_images]
    [--slice_by=size --slice_by='file:^([a-z]+)_' [--slice_metadata=meta.csv] [--min_slice_size=20]]
"""

import sys
import time

from absl import flags

from common import runtime
from core import cli, configurables

runtime.define_flags()
flags.DEFINE_string("checkpoint", None, "Checkpoint to evaluate (default: the latest).")
flags.DEFINE_bool("all_checkpoints", False, "Every checkpoint in step order, skipping those already evaluated.")
flags.DEFINE_bool(
    "continuous",
    False,
    "Evaluate each new checkpoint until the trainer's last (its TRAIN_STEPS or early stop), or the timeout.",
)
flags.DEFINE_float("timeout_secs", 600, "Continuous mode: stop after this long with no new checkpoint.")
flags.DEFINE_string("subset", None, "Example indices to evaluate: '3,17,42' or '@file' (one or more per line).")
flags.DEFINE_string("eval_name", None, "Results go to model_dir/eval_<name> (default: eval, or one per subset).")
flags.DEFINE_string("eval_set", None, "One of the config's EVAL_SETS (default: the first), into eval_<set>.")
flags.DEFINE_integer("worst_k", 0, "Evaluate and show the K worst examples of the latest full evaluation.")
flags.DEFINE_list("eval_scales", None, "Multi-scale evaluation: average the probabilities at these image scales.")
flags.DEFINE_bool("add_flipped_images", None, "Also average each scale's left-right mirror (DeepLab's flag).")
flags.DEFINE_multi_string(
    "slice_by", None, "Slices (metrics/slices.py): size, class, area, file:REGEX, a metadata column, or A*B."
)
flags.DEFINE_string("slice_metadata", None, "A CSV of per-file columns (first column or `file`: file names).")
flags.DEFINE_integer("min_slice_size", None, "Slices with fewer examples are reported as too small (gin default 20).")
FLAGS = flags.FLAGS


def slicing_overrides() -> dict:
    """The slicing flags given, over gin's `slicing.*` (--slice_by goes apart: it replaces an
    evaluation set's own slices too)."""
    given = {"metadata": FLAGS.slice_metadata, "min_size": FLAGS.min_slice_size}
    return {key: value for key, value in given.items() if value is not None}


def main(argv):
    del argv
    start = time.time()
    settings = cli.init(FLAGS)
    overrides = slicing_overrides()
    records = configurables.evaluate(
        **settings,
        checkpoint=FLAGS.checkpoint,
        all_checkpoints=FLAGS.all_checkpoints,
        continuous=FLAGS.continuous,
        timeout_secs=FLAGS.timeout_secs,
        subset=FLAGS.subset,
        eval_name=FLAGS.eval_name,
        eval_set=FLAGS.eval_set,
        worst_k=FLAGS.worst_k,
        eval_scales=[float(scale) for scale in FLAGS.eval_scales] if FLAGS.eval_scales else None,
        add_flipped_images=FLAGS.add_flipped_images,
        slice_by=FLAGS.slice_by,
        **({"slicing": configurables.slicing(**overrides)} if overrides else {}),
    )
    print(f"{len(records)} evaluation(s) in {time.time() - start:.0f}s", file=sys.stdout)


if __name__ == "__main__":
    cli.run(main)
