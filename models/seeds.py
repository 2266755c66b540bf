"""Seeded initializers for networks built from Keras layers."""

import tensorflow as tf


class Seeds:
    """Hands each layer its own initializer seed, derived from one seed.

    Keras initializers without a seed draw one from Python's `random`, so two
    builds of the same graph would start from different weights. Layer n of a
    network built with seed s gets seed `s * 1000 + n`.
    """

    def __init__(self, seed):
        self._seed, self._count = seed, 0

    def glorot(self):
        self._count += 1
        return tf.keras.initializers.GlorotUniform(seed=self._seed * 1000 + self._count)
