"""Trains and evaluates a segmentation model with `tf.estimator.train_and_evaluate`.

python train.py --gin_file=configs/synthetic.gin [--gin_param='TRAIN_STEPS = 100']
                [--model_dir=runs/synthetic]
"""

from absl import app, flags

from core import runtime  # First: quiets TensorFlow before it loads.

runtime.define_flags()
FLAGS = flags.FLAGS


def main(argv):
    del argv
    model_dir = runtime.init_from_flags(FLAGS)
    from core import configurables

    configurables.train_and_evaluate(**model_dir)


if __name__ == "__main__":
    app.run(main)
