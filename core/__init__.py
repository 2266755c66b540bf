"""Composition: the gin roots, checkpoints, results and errors.

Importing any `core` module first hides TensorFlow's C++ start-up chatter (cuDNN/cuFFT
factory "errors" on CPU-only hosts), which must be set before TensorFlow loads; real
failures still raise Python exceptions. Set TF_CPP_MIN_LOG_LEVEL yourself to see more.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
