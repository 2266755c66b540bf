"""Models: networks (`unet`, `deeplab`), tasks (segmentation, classification,
regression) and `build_model_fn`, which returns a plain `model_fn`."""

from models.model_fn import build_model_fn

__all__ = ["build_model_fn"]
