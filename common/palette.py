"""A fixed colour map for class masks: PASCAL VOC's, so colours match DeepLab's tools."""

import numpy as np

IGNORE_COLOUR = (255, 255, 255)


def voc_colour_map(num_colours: int = 256) -> np.ndarray:
    """PASCAL VOC's colour map: `num_colours` distinct RGB colours, uint8 [num_colours, 3].

    Class 0 is black, 1 dark red, 2 dark green, 3 olive, ...; 255 (VOC's ignore label)
    is a light cream. The id's bits are dealt round-robin to R, G and B, most significant
    colour bit first, so small ids get far-apart colours and ids below 2**24 are all distinct.
    """
    if num_colours > 1 << 24:
        raise ValueError(f"voc_colour_map: at most {1 << 24} distinct colours, asked for {num_colours}")
    ids = np.arange(num_colours, dtype=np.int64)
    colours = np.zeros((num_colours, 3), np.int64)
    for shift in range(7, -1, -1):
        for channel in range(3):
            colours[:, channel] |= ((ids >> channel) & 1) << shift
        ids = ids >> 3
    return colours.astype(np.uint8)


def mask_palette() -> np.ndarray:
    """VOC colours for class ids, and white for the ignore label 255."""
    colours = voc_colour_map(256)
    colours[255] = IGNORE_COLOUR
    return colours
