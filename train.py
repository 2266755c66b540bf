"""Trains and evaluates a segmentation model with `tf.estimator.train_and_evaluate`.

    python train.py --gin_file=configs/synthetic.gin [--gin_param='TRAIN_STEPS = 100']
                    [--model_dir=runs/synthetic]

Bad input, a bad config or a failing step ends with one line on stderr naming
what is at fault, exit code 1, and the model directory as it was.
"""

import sys

from absl import app, flags

from core import runtime  # First: quiets TensorFlow before it loads.

runtime.define_flags()
FLAGS = flags.FLAGS


def main(argv):
    del argv
    try:
        model_dir = runtime.init_from_flags(FLAGS)
        from core import configurables

        configurables.train_and_evaluate(**model_dir)
    except runtime.USER_ERRORS as error:
        print(f"error: {runtime.first_line(error)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
