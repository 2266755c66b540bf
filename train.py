"""Trains and evaluates a segmentation model with `tf.estimator.train_and_evaluate`.

python train.py --gin_file=configs/synthetic.gin [--gin_param='TRAIN_STEPS = 100']
                [--model_dir=runs/synthetic]
"""

from absl import app, flags

from core import runtime  # First: quiets TensorFlow before it loads.

flags.DEFINE_multi_string("gin_file", None, "Gin config file(s), applied in order.")
flags.DEFINE_multi_string("gin_param", None, "Gin bindings, e.g. 'TRAIN_STEPS = 100'; applied after the files.")
flags.DEFINE_string("model_dir", None, "Model directory; overrides the config's MODEL_DIR.")
flags.DEFINE_bool("verbose", False, "Show TensorFlow's INFO logs and deprecation warnings.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    runtime.quiet(FLAGS.verbose)
    runtime.make_deterministic()
    runtime.parse_gin(FLAGS.gin_file, FLAGS.gin_param or [])
    from core import configurables

    configurables.train_and_evaluate(**({"model_dir": FLAGS.model_dir} if FLAGS.model_dir else {}))


if __name__ == "__main__":
    flags.mark_flag_as_required("gin_file")
    app.run(main)
