"""Losses a task adds to its cross-entropy."""

import tensorflow as tf


def soft_dice(logits, labels, valid, num_classes: int, smooth: float = 1.0):
    """The batch's soft Dice, the mean over classes of `(2 sum(p y) + s) / (sum(p) + sum(y) + s)`.

    p is the softmax probability of the class and y its one-hot label, summed over every
    valid pixel of the batch: `2 tp / (2 tp + fp + fn)` with soft counts, as nnU-Net's
    batch Dice (Isensee et al. 2021; V-Net, Milletari et al. 2016, squares the terms of
    the denominator). `smooth` s keeps a class absent from labels and predictions at 1, not 0/0.
    """
    mask = tf.cast(valid, tf.float32)[..., None]
    probabilities = tf.nn.softmax(logits) * mask
    onehot = tf.one_hot(labels, num_classes) * mask
    overlap = tf.reduce_sum(probabilities * onehot, [0, 1, 2])
    total = tf.reduce_sum(probabilities + onehot, [0, 1, 2])
    return tf.reduce_mean((2.0 * overlap + smooth) / (total + smooth))
