"""`LocalSteps`: counts this trainer's own steps in a TF_CONFIG cluster."""

import tensorflow as tf


class LocalSteps(tf.compat.v1.train.SessionRunHook):
    """Counts this task's own training steps (the global step counts every trainer's)."""

    def __init__(self):
        self.count = 0
        self.first_global_step = None

    def after_create_session(self, session, coord):
        del coord
        self.first_global_step = int(session.run(tf.compat.v1.train.get_global_step()))

    def after_run(self, run_context, run_values):
        self.count += 1
