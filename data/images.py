"""Image and mask files as the converters and tools/predict.py read them: one rule for every path.

An image file gives the RGB uint8 pixels training decodes from its record
(`schema.decode_image`, TensorFlow's decoder wherever it reads the file right),
turned upright by its EXIF orientation as every photo viewer shows it, after its
size is read from the header and checked against a pixel limit (so a 20000 x 20000
PNG of a few hundred KB is refused before it takes gigabytes). The converters decode
every image in full, so a truncated or corrupt file is refused with one line naming
it instead of stopping training later.

A mask is a single-channel PNG of class ids (grey or palette: PASCAL VOC's), or an RGB
mask turned into class ids by a colour table (`ColourTable`, as CamVid and Cityscapes
publish theirs). Masks carry no orientation: they are drawn on the image as it is
shown, so they are never turned.
"""

import contextlib
import csv
import io
import json
import os
import re
import struct
import sys
import tempfile
import threading
import warnings

import numpy as np

from common.constants import IGNORE_LABEL
from common.errors import DataError
from data.schema import decode_image

# Larger than any photo or Cityscapes' 2 MP frames by far, small enough that a decoded
# image (3 bytes a pixel, plus the converter's copies) stays within a laptop's memory.
MAX_PIXELS = 50_000_000
_ORIENTATION = 0x0112  # The EXIF orientation tag.
# EXIF orientation -> the numpy op that shows the stored pixels upright (PIL's
# `ImageOps.exif_transpose`, on arrays: tests/test_intake.py checks every value against it).
_UPRIGHT = {
    2: lambda p: p[:, ::-1],
    3: lambda p: p[::-1, ::-1],
    4: lambda p: p[::-1],
    5: lambda p: p.transpose(1, 0, *range(2, p.ndim)),
    6: lambda p: np.rot90(p, -1),
    7: lambda p: np.rot90(p, 2).transpose(1, 0, *range(2, p.ndim)),
    8: lambda p: np.rot90(p, 1),
}


@contextlib.contextmanager
def _no_pil_limit():
    """PIL's own decompression-bomb check off: `header` checks the size against our limit first."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def _png_orientation(data: bytes) -> int:
    """A PNG's EXIF orientation from its eXIf chunk, walking the chunk headers only (PIL would decode it)."""
    from PIL import Image

    position = 8
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        if kind == b"eXIf":
            exif = Image.Exif()
            exif.load(data[position + 8 : position + 8 + length])
            return int(exif.get(_ORIENTATION, 1) or 1)
        if kind == b"IEND":
            break
        position += 12 + length
    return 1


def header(data: bytes, filename: str, max_pixels: int = MAX_PIXELS):
    """`(width, height, orientation)` from the file's header alone, the pixel limit checked.

    The size is the stored one (before orientation). Nothing is decoded.

    Raises:
      DataError: not an image PIL can open, or more than `max_pixels` pixels, naming the file.
    """
    from PIL import Image

    try:
        with _no_pil_limit(), Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            orientation = 1
            if image.format in ("JPEG", "MPO", "TIFF"):  # Their EXIF is in the header (MPO: a phone's JPEG).
                orientation = int(image.getexif().get(_ORIENTATION, 1) or 1)
    except Image.UnidentifiedImageError:
        raise DataError(f"{filename}: cannot read image: not a format TensorFlow or PIL reads") from None
    except (OSError, ValueError, SyntaxError, struct.error) as error:
        raise DataError(f"{filename}: cannot read image: {error}") from None
    if image.format == "PNG":
        orientation = _png_orientation(data)
    check_pixels(width, height, filename, max_pixels)
    return width, height, orientation if orientation in _UPRIGHT else 1


def check_pixels(width: int, height: int, filename: str, max_pixels: int = MAX_PIXELS):
    """Refuses an image of more than `max_pixels` pixels, naming the file and both sizes."""
    if max_pixels and width * height > max_pixels:
        raise DataError(
            f"{filename}: {width}x{height} is {width * height / 1e6:.1f} megapixels, over the limit of "
            f"{max_pixels / 1e6:g} (--max_pixels; resize it, or raise the limit if memory allows)"
        )


def upright(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """The pixels as shown by a viewer that applies EXIF `orientation` (1: as stored)."""
    turn = _UPRIGHT.get(orientation)
    return np.ascontiguousarray(turn(pixels)) if turn else pixels


# The first bytes by which TensorFlow's decode_image tells its formats apart.
_SIGNATURES = ((b"\xff\xd8\xff", "jpeg"), (b"\x89PNG\r\n\x1a\n", "png"), (b"GIF8", "gif"), (b"BM", "bmp"))


def sniff_format(data: bytes) -> str:
    """The format by the file's first bytes (not its name), as TensorFlow tells them apart.

    Returns "jpeg", "png", "gif" or "bmp"; "" for anything else (TIFF, WebP, ...).
    """
    return next((name for signature, name in _SIGNATURES if data.startswith(signature)), "")


def is_rgb8_png(data: bytes) -> bool:
    """An 8-bit RGB PNG (IHDR bit depth 8, colour type 2): `decode_image` gives its samples as they are."""
    return sniff_format(data) == "png" and len(data) >= 26 and data[24] == 8 and data[25] == 2


def _tensorflow_reads(data: bytes) -> bool:
    """Whether `decode_image` gives this file's true pixels.

    JPEG, PNG and GIF: always. BMP: only uncompressed 24- and 32-bit ones whose size
    is exactly header plus rows. TensorFlow's BMP reader ignores the palette (a
    palette BMP's indices come out as grey levels), the compression (RLE, bit
    fields) and the header kind, refuses 1-, 4- and 16-bit BMPs, and refuses a
    file with bytes after its rows; PIL reads all of those right.
    """
    kind = sniff_format(data)
    if kind in ("jpeg", "png", "gif"):
        return True
    if kind != "bmp" or len(data) < 34:
        return False
    offset, header_size, width, height, _, bits, compression = struct.unpack("<IIiiHHI", data[10:34])
    row_size = (bits // 8 * width + 3) // 4 * 4
    return (
        header_size >= 40
        and bits in (24, 32)
        and compression == 0
        and width > 0
        and len(data) == offset + row_size * abs(height)
    )


def _pil_rgb(data: bytes, filename: str) -> np.ndarray:
    """PIL's reading of an image TensorFlow cannot decode, by `decode_image`'s rule.

    Grey and bilevel are replicated to RGB, alpha is dropped (not composited), a
    palette gives its colours, and 16-bit samples become 8-bit by their high byte
    (`v >> 8`, what TensorFlow does to a 16-bit PNG: 0 -> 0, 65535 -> 255, within
    one level of a rounded `v * 255 / 65535`; PIL's own `convert` would clip a
    16-bit grey image at 255, making nearly every pixel white). PIL already reads
    16-bit RGB(A) TIFFs by their high byte; 32-bit integer samples (PIL mode I) are
    taken as 16-bit ones and refused outside [0, 65535]. Other modes (CMYK, YCbCr,
    LAB) go through PIL's conversion; floating-point images, whose scale is unknown,
    are refused.
    """
    from PIL import Image

    try:
        with _no_pil_limit(), Image.open(io.BytesIO(data)) as image:
            mode = image.mode
            if mode == "I" or mode.startswith("I;16"):
                values = np.asarray(image).astype(np.int64)
            elif mode != "F":
                pixels = np.asarray((image.convert("RGBA") if mode == "PA" else image).convert("RGB"))
    except Image.UnidentifiedImageError:
        raise DataError(f"{filename}: cannot read image: not a format TensorFlow or PIL reads") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise DataError(f"{filename}: cannot read image: {error}") from None
    if mode == "F":
        raise DataError(
            f"{filename}: floating-point samples (PIL mode F) have no agreed 8-bit scale; save it as 8- or 16-bit"
        )
    if mode == "I" or mode.startswith("I;16"):
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise DataError(
                f"{filename}: 32-bit integer samples from {values.min()} to {values.max()}; save it as 8 or 16 bits"
            )
        grey = (values >> 8).astype(np.uint8)
        pixels = np.repeat(grey[..., None], 3, axis=-1)
    return np.ascontiguousarray(pixels, dtype=np.uint8)


def decode_image_bytes(data: bytes, filename: str, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """An encoded image's RGB uint8 [H, W, 3] pixels, upright, by `decode_image`'s rule.

    TensorFlow's decoder is the decoder: it decodes every file it reads right
    (JPEG, PNG, GIF, plain 24- and 32-bit BMP). Anything else (TIFF, palette or
    compressed BMP, any format PIL opens) is read by PIL and converted by the same
    rule (see `_pil_rgb`). `tools/build_tfrecords.py` and `tools/predict.py` both go
    through here, so a file gives predict.py the pixels training got from its record.

    The header is read first: over `max_pixels` pixels (0: no limit), nothing is
    decoded. The pixels are then turned upright by the EXIF orientation.

    Raises:
      DataError: the bytes are not an image either decoder reads, or too large, naming `filename`.
    """
    pixels, orientation = _decode(data, filename, max_pixels)
    return upright(pixels, orientation)


def _decode(data: bytes, filename: str, max_pixels: int):
    """`(stored pixels, EXIF orientation)`: decoded in full, the limit checked on the header first."""
    orientation = header(data, filename, max_pixels)[2]
    return _decode_stored(data, filename), orientation


def _decode_stored(data: bytes, filename: str) -> np.ndarray:
    if _tensorflow_reads(data):
        import tensorflow as tf

        failed = None
        with _native_stderr() as printed:
            try:
                pixels = decode_image(data).numpy()
            except tf.errors.OpError as error:
                failed = error
        if failed is not None:  # One line, libjpeg's own reason first (it printed it to C's stderr).
            first = (failed.message or "").strip().splitlines()[:1]
            reason = re.sub(r"\{\{[^}]*\}\}\s*|\s*\[Op:\w+\]", "", first[0] if first else "")
            reason = "; ".join([*printed, reason] if reason else printed) or type(failed).__name__
            raise DataError(f"{filename}: cannot decode image: {reason}") from None
        for line in printed:  # Decoded, with a warning (e.g. "Corrupt JPEG data: 2 extraneous bytes"): named.
            print(f"notice: {filename}: {line}", flush=True)
        return pixels
    return _pil_rgb(data, filename)


_STDERR = threading.Lock()  # One capture at a time: file descriptor 2 is the process's.


@contextlib.contextmanager
def _native_stderr():
    """Captures what native code (libjpeg inside TensorFlow) prints to file descriptor 2 in the
    block, where it would reach the user as a line that names no file; yields the lines, filled
    when the block ends. Without a descriptor 2 or a temporary file, nothing is captured."""
    lines = []
    with _STDERR:
        saved = capture = None
        try:
            sys.stderr.flush()
            capture = tempfile.TemporaryFile()
            saved = os.dup(2)
            os.dup2(capture.fileno(), 2)
        except (OSError, ValueError):
            if saved is not None:
                os.close(saved)
                saved = None
        try:
            yield lines
        finally:
            if saved is not None:
                os.dup2(saved, 2)
                os.close(saved)
                capture.seek(0)
                text = capture.read().decode(errors="replace")
                lines += [line.strip() for line in text.splitlines() if line.strip()]
            if capture is not None:
                capture.close()


def read_bytes(path: str, what: str = "image") -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as error:
        raise DataError(f"{path}: cannot read {what}: {error.strerror or error}") from None


def read_image_file(path: str, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """The RGB uint8 [H, W, 3] pixels of an image file, upright, the same on every path (see `decode_image_bytes`).

    Raises:
      DataError: unreadable, undecodable or too large a file, naming it.
    """
    return decode_image_bytes(read_bytes(path), path, max_pixels)


def image_for_record(path: str, max_pixels: int = MAX_PIXELS):
    """An image file as a record stores it: `(JPEG/PNG bytes or RGB array, format, (height, width))`.

    Decoded in full whatever it is, so a truncated or corrupt file is refused here.
    A JPEG, and an 8-bit RGB PNG, keep their bytes when they are upright (no EXIF
    turn): TensorFlow decodes them at train, eval and predict time, and re-encoding
    would lose quality (a JPEG) or time. Anything else, and any image with an EXIF
    orientation, is stored as the pixels `read_image_file` gives, upright (a PNG):
    what training decodes from the record is what predict.py reads from the file.

    Raises:
      DataError: unreadable, undecodable or too large a file, naming it.
    """
    data = read_bytes(path)
    stored, orientation = _decode(data, path, max_pixels)
    if orientation == 1 and (sniff_format(data) == "jpeg" or is_rgb8_png(data)):
        return data, sniff_format(data), stored.shape[:2]
    pixels = upright(stored, orientation)
    return pixels, "png", pixels.shape[:2]


def read_mask(path: str, size, colours=None, unknown_to_ignore: bool = False, max_pixels: int = MAX_PIXELS):
    """A mask file's class ids, uint8 [H, W] (255: ignore), checked against its image's `(height, width)`.

    Without `colours`, a grey or palette PNG whose values are the class ids (VOC's
    palette masks read as their indices). With a `ColourTable`, an RGB (or palette)
    mask whose colours are looked up in it. The size is checked on the header,
    before anything is decoded.

    Raises:
      DataError: unreadable mask, a colour mask without a table, a size other than
        the image's, or a colour not in the table (unless `unknown_to_ignore`), naming the file.
    """
    from PIL import Image

    data = read_bytes(path, "mask")
    try:
        with _no_pil_limit(), Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            check_pixels(width, height, path, max_pixels)
            if (height, width) != tuple(size):
                raise DataError(
                    f"{path}: mask is {width}x{height} but its image is {size[1]}x{size[0]} (width x height, "
                    "the image as shown: EXIF orientation applied)"
                )
            mode = image.mode
            if colours is None:
                if mode == "1":  # A bilevel PNG: values 0 and 1.
                    return np.asarray(image, dtype=np.uint8)
                if mode not in ("L", "P"):
                    raise DataError(
                        f"{path}: mask mode {mode}; masks must be single-channel PNG (grey or palette) whose "
                        "pixel value is the class id, or colour masks with --mask_colors=TABLE"
                    )
                return np.asarray(image, dtype=np.uint8)
            rgb = np.asarray(image.convert("RGB"))
    except DataError:
        raise
    except Image.UnidentifiedImageError:
        raise DataError(f"{path}: cannot read mask: not an image PIL reads") from None
    except (OSError, ValueError, SyntaxError) as error:
        raise DataError(f"{path}: cannot read mask: {error}") from None
    return colours.class_ids(rgb, path, unknown_to_ignore)


class ColourTable:
    """Mask colours -> class ids: `ColourTable.read(path)`, then `class_ids(rgb, filename)`.

    The table is a CSV or text file with one row per class, `name,r,g,b`, `r,g,b,name` or
    `name,#rrggbb` (commas, tabs or spaces; CamVid's `label_colors.txt` reads as it is; a
    header row on the first line and `#` comments are skipped), or a JSON object
    `{"name": [r, g, b], ...}`. Class ids follow the rows' order; a class named `ignore`
    maps to the ignore label (255) and is not a class.
    """

    def __init__(self, names, colours, ids):
        self.names = list(names)  # The classes, in id order (without ignore).
        self._keys = np.array([_key(colour) for colour in colours], np.int64)
        order = np.argsort(self._keys)
        self._keys, self._ids = self._keys[order], np.asarray(ids, np.uint8)[order]

    @classmethod
    def read(cls, path: str) -> "ColourTable":
        """Reads a table file (see the class docstring).

        Raises:
          DataError: unreadable file, a malformed row, a repeated colour or name, naming the row.
        """
        try:
            with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: Excel's "CSV UTF-8" starts with a BOM.
                text = f.read()
        except OSError as error:
            raise DataError(f"{path}: cannot read the colour table: {error.strerror or error}") from None
        except UnicodeDecodeError as error:
            raise DataError(f"{path}: the colour table is not UTF-8 text (byte {error.start})") from None
        rows = _json_rows(text, path) if path.lower().endswith(".json") else _text_rows(text, path)
        names, colours, ids, seen = [], [], [], {}
        for where, name, colour in rows:
            if tuple(colour) in seen:
                raise DataError(f"{where}: colour {tuple(colour)} is also {seen[tuple(colour)]!r}")
            seen[tuple(colour)] = name
            if name.lower() == "ignore":
                ids.append(IGNORE_LABEL)
            elif name in names:
                raise DataError(f"{where}: class {name!r} is named twice")
            else:
                ids.append(len(names))
                names.append(name)
            colours.append(colour)
        if not names:
            raise DataError(f"{path}: no classes in the colour table")
        if len(names) >= IGNORE_LABEL:
            raise DataError(f"{path}: {len(names)} classes; at most {IGNORE_LABEL} fit a mask (255 is ignore)")
        return cls(names, colours, ids)

    def class_ids(self, rgb: np.ndarray, filename: str, unknown_to_ignore: bool = False) -> np.ndarray:
        """uint8 [H, W] class ids of an RGB uint8 [H, W, 3] mask.

        Raises:
          DataError: a colour not in the table (unless `unknown_to_ignore`: it becomes
            255), naming the file, up to three such colours and their pixel counts.
        """
        keys = _key(rgb)
        unique, inverse = np.unique(keys.ravel(), return_inverse=True)
        position = np.minimum(np.searchsorted(self._keys, unique), len(self._keys) - 1)
        known = self._keys[position] == unique
        if not known.all() and not unknown_to_ignore:
            counts = np.bincount(inverse, minlength=len(unique))
            unknown = sorted(np.flatnonzero(~known), key=lambda i: -counts[i])
            listed = ", ".join(f"{_colour(unique[i])} ({counts[i]} pixels)" for i in unknown[:3])
            more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
            raise DataError(
                f"{filename}: colour(s) not in --mask_colors: {listed}{more} "
                "(add them to the table, or --unknown_colors=ignore to leave them out)"
            )
        values = np.where(known, self._ids[position], IGNORE_LABEL).astype(np.uint8)
        return values[inverse].reshape(keys.shape)


def _key(colour) -> np.ndarray:
    colour = np.asarray(colour, np.int64)
    return (colour[..., 0] << 16) | (colour[..., 1] << 8) | colour[..., 2]


def _colour(key) -> str:
    key = int(key)
    return f"({key >> 16}, {(key >> 8) & 255}, {key & 255})"


def _parse_colour(values, where):
    try:
        colour = [int(value) for value in values]
    except (TypeError, ValueError):
        return None
    if len(colour) != 3 or not all(0 <= value <= 255 for value in colour):
        raise DataError(f"{where}: a colour is three integers from 0 to 255, got {values}")
    return colour


def _text_rows(text: str, path: str):
    rows, header_passed = [], False
    for number, line in enumerate(text.splitlines(), 1):
        where = f"{path}: line {number}"
        if re.match(r"\s*#[0-9a-fA-F]{6}\b", line):  # Not a comment: a class would vanish, the ids after it move.
            raise DataError(f"{where}: a line starting with a colour reads as a # comment; write name,#rrggbb")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = [field.strip() for field in (next(csv.reader([line])) if "," in line else line.split())]
        if len(fields) >= 4 and all(_is_int(field) for field in fields[:3]):  # r,g,b,name
            colour, name = _parse_colour(fields[:3], where), " ".join(fields[3:])
        elif len(fields) >= 4 and all(_is_int(field) for field in fields[-3:]):  # name,r,g,b
            colour, name = _parse_colour(fields[-3:], where), " ".join(fields[:-3])
        elif len(fields) >= 2 and _HEX.fullmatch(fields[-1]):  # name,#rrggbb
            colour, name = _hex_colour(fields[-1]), " ".join(fields[:-1])
        elif not header_passed and len(fields) > 1 and not any(_is_int(f) or f.startswith("#") for f in fields):
            header_passed = True  # The first line only: a header row, such as name,r,g,b.
            continue
        else:
            raise DataError(f"{where}: expected name,r,g,b or r,g,b,name or name,#rrggbb, got {line.strip()!r}")
        header_passed = True
        rows.append((where, name, colour))
    return rows


_HEX = re.compile(r"#[0-9a-fA-F]{6}")


def _hex_colour(text: str) -> list:
    return [int(text[i : i + 2], 16) for i in (1, 3, 5)]


def _json_rows(text: str, path: str):
    try:
        table = json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not JSON: {error}") from None
    if not isinstance(table, dict):
        raise DataError(f'{path}: expected a JSON object {{"name": [r, g, b], ...}}')
    rows = []
    for name, values in table.items():
        where = f"{path}: {name!r}"
        colour = _parse_colour(values, where) if isinstance(values, list) else None
        if colour is None:
            raise DataError(f"{where}: a colour is [r, g, b], got {values!r}")
        rows.append((where, name, colour))
    return rows


def _is_int(text: str) -> bool:
    return bool(re.fullmatch(r"\d+", text))
