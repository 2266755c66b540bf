"""Checks of PNG class masks that find a colour mask where class ids are expected.

PASCAL VOC's SegmentationClass masks are colour-palette PNGs; DeepLab's converters store
them byte for byte when `remove_gt_colormap.py` was skipped, and decoded as grey their
pixels read as colour luminances (38, 75, ..., 220), not class ids. The segmentation
task (`models/segmentation.py`) runs these checks on every mask it decodes, so such a
mask stops with a message that says what it is instead of "label outside [0, C): 220".
"""

import io

import numpy as np
import tensorflow as tf
from PIL import Image

from common.palette import voc_colour_map

_PNG_SIGNATURE = list(b"\x89PNG\r\n\x1a\n")
PALETTE_MASK_MESSAGE = (
    "mask is a colour-palette PNG (decoded as grey it gives colour luminances like 220, not class ids): "
    "convert it with remove_gt_colormap.py (DeepLab) or tools/build_tfrecords.py: index"
)  # No apostrophe: TensorFlow prints an assertion's strings with quotes escaped.


@tf.autograph.experimental.do_not_convert
def is_colour_palette_png(encoded):
    """Whether PNG bytes hold a palette of colours, not of greys (a bool scalar tensor).

    `decode_png(channels=1)` turns a palette PNG (IHDR colour type, byte 25, is 3)
    into its colours' grey levels, not its indices: PASCAL VOC's SegmentationClass
    masks, which DeepLab's converters store byte for byte when remove_gt_colormap.py
    was skipped, read as 38, 75, ... and 220 (the cream border) instead of 1, 2, ...
    and 255. A palette of greys only (PIL's `convert("P")` of a grey mask) decodes
    to those greys, as DeepLab reads it too, and is let through.
    """
    head = tf.strings.substr(tf.strings.join([tf.strings.substr(encoded, 0, 26), "\0" * 26]), 0, 26)
    head = tf.io.decode_raw(head, tf.uint8)
    is_palette = tf.logical_and(tf.reduce_all(tf.equal(head[:8], _PNG_SIGNATURE)), tf.equal(head[25], 3))

    def has_colour():
        rgb = tf.io.decode_png(encoded, channels=3)
        return tf.reduce_any(tf.not_equal(rgb[:, :, :1], rgb[:, :, 1:]))

    return tf.cond(is_palette, has_colour, lambda: tf.constant(False))


@tf.autograph.experimental.do_not_convert
def palette_grey_levels(ids):
    """The grey levels `decode_png(channels=1)` gives the VOC palette colours of `ids` (uint8 [len(ids)]).

    Decoded in the graph from a constant palette PNG, so they are exactly this
    decoder's (libpng's weights, with greys kept), not a re-derived formula.
    """

    image = Image.fromarray(np.asarray([ids], np.uint8), mode="P")
    image.putpalette(voc_colour_map(256).ravel().tolist())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return tf.io.decode_png(tf.constant(buffer.getvalue()), channels=1)[0, :, 0]
