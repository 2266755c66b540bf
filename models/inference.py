"""How the model_fn runs a network: any image size, one image at a time, several scales and flips.

- **Any size.** A network may need H and W to be a multiple of something (the
  U-Net's `2**depth`, DeepLab's output stride): its `input_multiple`. The image is
  padded at the bottom and right with the pad pixel (`data.preprocess.PAD_PIXEL`,
  about the mean) up to that multiple, and the logits are cropped back, so a
  SavedModel takes any H and W and answers at that size.
- **One image at a time.** An evaluation batch of images of different sizes comes
  padded to one size with each image's own size in `features["size"]`; each image
  is then cropped to its own size and run alone (`tf.map_fn`), exactly as the
  exported model runs it, so neither the padding nor the batch size changes any
  prediction, and padded pixels (labelled ignore) are never counted.
- **Several views.** DeepLab's `eval_scales` and `add_flipped_images`: the image
  is resized by each scale (and mirrored left-right), each view's output brought
  back to the image (un-mirrored, resized), and the task combines the views
  (`Task.combine_views`: for categorical tasks, the mean of the probabilities).

Running the network more than once in a graph must not make new weights: every
call after the first gets the first call's variables, in creation order, through a
variable creator (`SharedVariables`). A network only has to create its variables in
the same order on every call, which Keras layers do.
"""

import contextlib
import math

import tensorflow as tf

from data.preprocess import PAD_PIXEL, resize_bilinear


def normalise(images):
    """uint8 (or float) images in [0, 255] -> float32 in [-1, 1], the networks' input."""
    return tf.cast(images, tf.float32) / 127.5 - 1.0


PAD_VALUE = PAD_PIXEL / 127.5 - 1.0  # The pad pixel after `normalise`.


class SharedVariables:
    """Hands every network call after the first the first call's variables, in creation order.

    Use `with shared.scope():` around every call. Variables made through a
    variable creator (Keras layers, `tf.Variable`) and through
    `tf.compat.v1.get_variable` (a custom getter) share one sequence, so a network
    may use either or both.
    """

    def __init__(self):
        self.variables = []
        self._calls = 0
        self._position = 0

    def _next(self):
        if self._position >= len(self.variables):
            raise ValueError(
                f"the network created more variables on a later call than on its first ({len(self.variables)}); "
                "it must create the same variables, in the same order, on every call"
            )
        self._position += 1
        return self.variables[self._position - 1]

    def _creator(self, next_creator, **kwargs):
        if self._calls > 1:
            return self._next()
        variable = next_creator(**kwargs)
        self.variables.append(variable)
        return variable

    def _getter(self, getter, *args, **kwargs):
        # The first call creates through the store (and so through `_creator`, which records).
        return getter(*args, **kwargs) if self._calls == 1 else self._next()

    @contextlib.contextmanager
    def scope(self):
        """The context of one network call (the first creates, the others reuse)."""
        self._calls += 1
        self._position = 0
        current = tf.compat.v1.get_variable_scope()
        with tf.variable_creator_scope(self._creator):
            with tf.compat.v1.variable_scope(current, custom_getter=self._getter, auxiliary_name_scope=False):
                yield self


def _pad_to_multiple(images, multiple: int):
    """Pads float images [B, H, W, 3] at the bottom and right to a multiple; None if already one."""
    height, width = images.shape[1], images.shape[2]
    if multiple <= 1 or (height is not None and width is not None and height % multiple == 0 and width % multiple == 0):
        return None
    shape = tf.shape(images)  # Python ints where the size is static, so the padded size is too.
    pad_h = (-height) % multiple if height is not None else (-shape[1]) % multiple
    pad_w = (-width) % multiple if width is not None else (-shape[2]) % multiple
    return tf.pad(images, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]], constant_values=PAD_VALUE)


def _at_image_size(logits, images):
    """Dense logits with the images' static height and width (a crop or resize to a tensor size
    loses them; a summary of the predictions needs them), checked when the graph runs."""
    return tf.ensure_shape(logits, images.shape[:3].concatenate([None]))


def single_view(network, task, images, training: bool, seed: int):
    """The task's logits for float images [B, H, W, 3]: padded to the network's multiple and cropped back.

    Dense (per-pixel) logits are computed on the padded image and cropped to
    [B, H, W, C]; image-level logits see only the output cells the image covers.
    """
    padded = _pad_to_multiple(images, getattr(network, "input_multiple", 1))
    if padded is None:
        return task.head(network(images, task.num_outputs, training=training, seed=seed), images)
    outputs = network(padded, task.num_outputs, training=training, seed=seed)
    size = tf.shape(images)[1:3]
    if task.dense_labels:
        return _at_image_size(task.head(outputs, padded)[:, : size[0], : size[1]], images)
    # The output cells covering the image: ceil(size * output size / padded size).
    padded_size, output_size = tf.shape(padded)[1:3], tf.shape(outputs)[1:3]
    covered = (size * output_size + padded_size - 1) // padded_size
    return task.head(outputs[:, : covered[0], : covered[1]], images)


def multi_view(network, task, images, seed: int, scales=(1.0,), flip: bool = False, shared=None):
    """The views' logits combined by the task: each scale, and its left-right mirror if `flip`.

    A single view at scale 1 without flip is `single_view` itself (no combination).
    """
    scales = [float(scale) for scale in scales]
    shared = shared or SharedVariables()
    if scales == [1.0] and not flip:
        with shared.scope():
            return single_view(network, task, images, False, seed)
    size = tf.shape(images)[1:3]
    views = []
    for scale in scales:
        scaled = images
        if scale != 1.0:
            scaled_size = tf.cast(tf.round(tf.cast(size, tf.float32) * scale), tf.int32)
            scaled = resize_bilinear(images, tf.maximum(scaled_size, 1))
        for mirrored in [False, True] if flip else [False]:
            view = tf.reverse(scaled, [2]) if mirrored else scaled
            with shared.scope():
                logits = single_view(network, task, view, False, seed)
            if task.dense_labels:
                if mirrored:
                    logits = tf.reverse(logits, [2])
                if scale != 1.0:
                    logits = resize_bilinear(logits, size)
            views.append(logits)
    combined = task.combine_views(views)
    return _at_image_size(combined, images) if task.dense_labels else combined


def logits_per_image(
    network, task, images, sizes, seed: int, scales=(1.0,), flip: bool = False, image_sizes=None, output_like=None
):
    """Logits of a padded batch whose images have their own `sizes` (int32 [B, 2]).

    Each image is cropped to its size and run alone (as the exported model runs it);
    dense logits are padded back to the batch's size with zeros (their pixels are
    labelled ignore, so no metric counts them). With `image_sizes` (an evaluation
    resize), image i is cropped to `image_sizes[i]` and its dense logits resized
    (bilinear) to `sizes[i]`, the labels' size, and padded to the size of
    `output_like` (the padded labels).
    """
    shared = SharedVariables()
    # The first call makes the variables outside the loop (TensorFlow cannot
    # initialise a variable created inside one); its output is never computed.
    with shared.scope():
        template = single_view(network, task, images[:1], False, seed)
    output_like = images if output_like is None else output_like
    static_size, output_size = output_like.shape[1:3], tf.shape(output_like)[1:3]
    crop_sizes = sizes if image_sizes is None else image_sizes

    def one(args):
        image, size, crop = args
        logits = multi_view(network, task, image[None, : crop[0], : crop[1]], seed, scales, flip, shared)
        if task.dense_labels:
            if image_sizes is not None:
                logits = resize_bilinear(logits, size)
            logits = tf.pad(logits[0], [[0, output_size[0] - size[0]], [0, output_size[1] - size[1]], [0, 0]])
            return logits
        return logits[0]

    signature = tf.TensorSpec([None] * (template.shape.rank - 1), template.dtype)
    logits = tf.map_fn(one, (images, sizes, crop_sizes), fn_output_signature=signature)
    if task.dense_labels:
        return tf.ensure_shape(logits, [images.shape[0], *static_size, template.shape[-1]])
    return tf.ensure_shape(logits, [images.shape[0], *template.shape[1:]])


def check_scales(scales):
    """The evaluation scales as floats; each must be > 0."""
    scales = [float(scale) for scale in (scales or (1.0,))]
    bad = [scale for scale in scales if not (scale > 0 and math.isfinite(scale))]
    if bad:
        raise ValueError(f"eval_scales: every scale must be a finite number > 0, got {bad[0]}")
    return scales
