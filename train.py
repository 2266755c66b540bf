"""Trains and evaluates a model with `tf.estimator.train_and_evaluate`.

    python train.py --gin_file=configs/synthetic.gin [--gin_param='TRAIN_STEPS = 100']
                    [--model_dir=runs/synthetic]

Bad input, a bad config or a failing step ends with one line on stderr naming
what is at fault, exit code 1, and the model directory as it was.

Start reading here. This file parses flags and gin and makes one call; the recipe it
calls is `core/experiment.py`, then `models/model_fn.py`, `models/task.py`,
`data/input.py` and `core/evaluation.py`, each pointing to the next.
"""

from absl import flags

from common import runtime
from core import cli, configurables

runtime.define_flags()
FLAGS = flags.FLAGS


def main(argv):
    del argv
    configurables.train_and_evaluate(**cli.init(FLAGS))


if __name__ == "__main__":
    cli.run(main)
