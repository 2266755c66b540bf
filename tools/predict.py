"""Runs an exported SavedModel on image files, for any of the template's tasks.

    python tools/predict.py --saved_model=exports/synthetic/1700000000 --output_dir=predictions \
        [--class_names=background,circle,square,triangle] photo1.png photo2.jpg ...

Images are positional arguments (let the shell expand globs: `images/*.png`), of any
size and file type (`data.images.read_image_file`: the pixels training decodes, EXIF
orientation applied, at most `--max_pixels`); each
is run alone at its own size (the SavedModel pads to the network's multiple and crops
back), so each mask has its image's size. The task is read from the signature's
outputs. For segmentation (`classes` [N, H, W]), each input `<stem>.<ext>` gives:

- `<stem>_mask.png`: the class mask in colour (PASCAL VOC's colour map, `colour_map`);
- `<stem>_overlay.png`: the image blended with that colour mask (alpha 0.5);
- `<stem>_classes.png`: the raw class ids, single channel, for exact re-reading.

For classification (`classes` [N]) and regression (`predictions` [N, T]) it writes
one `predictions.csv` with a row per image. It prints one line per image.
"""

import csv
import os

import numpy as np
from absl import flags

from common import runtime
from common.errors import DataError
from common.palette import voc_colour_map as colour_map  # The masks' palette, shared with TensorBoard panels.
from core import cli

FLAGS = flags.FLAGS

OVERLAY_ALPHA = 0.5


def colourise(classes: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Class ids [H, W] -> RGB uint8 [H, W, 3] through `palette` (from `colour_map`)."""
    return palette[classes]


def overlay(image: np.ndarray, colour_mask: np.ndarray, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """`image` blended with `colour_mask`: `(1 - alpha) * image + alpha * colour_mask`, uint8."""
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * colour_mask.astype(np.float32)
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def load_image(path: str, height=None, width=None, max_pixels=None) -> np.ndarray:
    """Reads an image as RGB uint8 [H, W, 3], upright, with the decoder training uses.

    Raises:
      DataError: unreadable file, over `max_pixels` (default `images.MAX_PIXELS`), or
        (for a model exported at a fixed size) a size other than `height` x `width`, naming both.
    """

    from data import images

    try:
        # The reader the converters store records with: the same pixels as training.
        image = images.read_image_file(path, images.MAX_PIXELS if max_pixels is None else max_pixels)
    except DataError as error:
        raise DataError(str(error)) from None
    if height is not None and width is not None and image.shape[:2] != (height, width):
        raise DataError(
            f"{path}: image is {image.shape[1]}x{image.shape[0]} but the model takes {width}x{height} "
            "(width x height); resize it first"
        )
    return image


def write_png(array: np.ndarray, path: str):
    """Writes a uint8 [H, W] or [H, W, 3] array, or a uint16 [H, W] one, as PNG."""
    from PIL import Image

    if array.dtype == np.uint16:
        Image.fromarray(array, mode="I;16").save(path)
    else:
        Image.fromarray(array).save(path)


class Predictor:
    """A loaded SavedModel signature: `predictor(images uint8 [N,H,W,3]) -> classes [N,H,W]`."""

    def __init__(self, saved_model_dir: str, signature: str = "serving_default"):
        import tensorflow as tf

        try:
            self._model = tf.saved_model.load(saved_model_dir)  # Held: the signature needs its variables.
        except (OSError, ValueError) as error:
            raise DataError(f"{saved_model_dir}: cannot load a SavedModel: {error}") from None
        if signature not in self._model.signatures:
            raise DataError(
                f"{saved_model_dir}: no signature {signature!r} (has {', '.join(self._model.signatures) or 'none'})"
            )
        self._function = self._model.signatures[signature]
        image_spec = self._function.structured_input_signature[1]["image"]
        # None: any size (the template's exports); a number: a model exported at a fixed size.
        self.height, self.width = image_spec.shape[1], image_spec.shape[2]
        outputs = self._function.structured_outputs
        if "predictions" in outputs:
            self.task, self.num_classes = "regression", int(outputs["predictions"].shape[-1])
        elif "classes" in outputs and "probabilities" in outputs:
            self.num_classes = int(outputs["probabilities"].shape[-1])
            self.task = "segmentation" if outputs["classes"].shape.rank == 3 else "classification"
        else:
            raise DataError(f"{saved_model_dir}: outputs {sorted(outputs)} are not those of a template task")

    def run(self, images: np.ndarray) -> dict:
        """All the signature's outputs for uint8 images [N, H, W, 3], as numpy arrays."""
        import tensorflow as tf

        return {key: value.numpy() for key, value in self._function(image=tf.constant(images, tf.uint8)).items()}

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Segmentation and classification: the predicted classes."""
        return self.run(images)["classes"]


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def predict(
    saved_model_dir: str, image_paths, output_dir: str, class_names=None, signature="serving_default", max_pixels=None
):
    """Runs the model on `image_paths` and writes its outputs under `output_dir`.

    Segmentation writes `<stem>_mask.png`, `_overlay.png` and `_classes.png` per
    image; classification and regression write `predictions.csv`. Every image is
    checked (readable, decodable, at most `max_pixels`, right size, unique stem)
    before any is run, so a bad one fails fast and leaves no partial output; each is
    then decoded again as it is run, so memory holds one image at a time.

    Args:
      saved_model_dir: a SavedModel from tools/export.py.
      image_paths: image files of any size (unless the model was exported at a fixed one).
      output_dir: created if missing.
      class_names: class (or target) names for the printed summary; None for ids.
      signature: the signature to run.
      max_pixels: refuse larger images, from their header (None: `data.images.MAX_PIXELS`; 0: no limit).

    Returns:
      `{image_path: output}`: the classes [H, W] (segmentation), the class id
      (classification) or the values [T] (regression).

    Raises:
      DataError: naming the file (or the class names) at fault.
    """
    if not image_paths:
        raise DataError("no images given")
    stems = {}
    for path in image_paths:
        if _stem(path) in stems:
            raise DataError(f"{path} and {stems[_stem(path)]} would write the same {_stem(path)}_*.png files")
        stems[_stem(path)] = path
    predictor = Predictor(saved_model_dir, signature)
    if class_names is not None and len(class_names) != predictor.num_classes:
        raise DataError(f"--class_names has {len(class_names)} names but the model has {predictor.num_classes}")
    names = list(class_names) if class_names is not None else [str(i) for i in range(predictor.num_classes)]
    for path in image_paths:  # Every file decoded once first: a bad one stops it before any output.
        load_image(path, predictor.height, predictor.width, max_pixels)
    # Then decoded again one at a time as they are run: memory holds one image, however many are given.
    images = (load_image(path, predictor.height, predictor.width, max_pixels) for path in image_paths)
    os.makedirs(output_dir, exist_ok=True)
    if predictor.task == "segmentation":
        return _write_masks(predictor, image_paths, images, output_dir, names)
    return _write_table(predictor, image_paths, images, output_dir, names)


def _write_masks(predictor, image_paths, images, output_dir, names):
    palette = colour_map(max(predictor.num_classes, 256))
    id_dtype = np.uint8 if predictor.num_classes <= 256 else np.uint16
    results = {}
    for path, image in zip(image_paths, images):
        # One image per call, decoded just before: memory stays flat however many are given.
        classes = predictor(image[None])[0]
        colour_mask = colourise(classes, palette)
        prefix = os.path.join(output_dir, _stem(path))
        write_png(colour_mask, prefix + "_mask.png")
        write_png(overlay(image, colour_mask), prefix + "_overlay.png")
        write_png(classes.astype(id_dtype), prefix + "_classes.png")
        results[path] = classes
        shares = np.bincount(classes.ravel(), minlength=predictor.num_classes) / classes.size
        summary = ", ".join(f"{names[i]} {share:.1%}" for i, share in enumerate(shares) if share > 0)
        print(f"{path} -> {prefix}_{{mask,overlay,classes}}.png ({summary})", flush=True)
    return results


def _write_table(predictor, image_paths, images, output_dir, names):
    """Classification (class, its name, probability) or regression (one column per target)."""
    results, rows = {}, []
    for path, image in zip(image_paths, images):
        outputs = predictor.run(image[None])
        if predictor.task == "classification":
            class_id = int(outputs["classes"][0])
            probability = float(outputs["probabilities"][0][class_id])
            results[path] = class_id
            rows.append([path, class_id, names[class_id], f"{probability:.6f}"])
            print(f"{path}: {names[class_id]} ({probability:.1%})", flush=True)
        else:
            values = outputs["predictions"][0]
            results[path] = values
            rows.append([path, *[f"{value:.6g}" for value in values]])
            print(f"{path}: " + ", ".join(f"{n} {v:.4g}" for n, v in zip(names, values)), flush=True)
    header = (
        ["image", "class", "class_name", "probability"] if predictor.task == "classification" else ["image", *names]
    )
    table = os.path.join(output_dir, "predictions.csv")
    with open(table, "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    print(f"{len(rows)} prediction(s) -> {table}")
    return results


def main(argv):
    runtime.quiet(FLAGS.verbose)
    predict(FLAGS.saved_model, argv[1:], FLAGS.output_dir, FLAGS.class_names, FLAGS.signature, FLAGS.max_pixels)


def define_flags():
    """The command line (defined here, not at import, so the functions import anywhere)."""
    from data.images import MAX_PIXELS

    flags.DEFINE_string("saved_model", None, "SavedModel folder written by tools/export.py.")
    flags.DEFINE_string("output_dir", None, "Folder for the masks (segmentation) or predictions.csv.")
    flags.DEFINE_list("class_names", None, "Class names for the per-image summary (default: class ids).")
    flags.DEFINE_string("signature", "serving_default", "Signature to run.")
    flags.DEFINE_integer("max_pixels", MAX_PIXELS, "Refuse larger images (from the header); 0: no limit.")
    flags.DEFINE_bool("verbose", False, "Show TensorFlow's INFO logs and deprecation warnings.")
    flags.mark_flags_as_required(["saved_model", "output_dir"])


if __name__ == "__main__":
    define_flags()
    cli.run(main)
