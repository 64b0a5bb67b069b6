"""The one image-file decoder: bounded size, EXIF orientation, 16-bit and float pixels to 8 bits, RGB."""

# Every path that reads an image file for the model (classify, the images source, train, the
# converter's calibration and evaluation sets) and the snapshot still of such a file comes through
# `decode`, so they agree on what the picture is:
# * A small file can declare a huge image (a 518 KB PNG of 13000x13000 decodes to 500 MB, more than a
#   Pi Zero 2 W has). Pillow only refuses beyond ~179 M pixels, and merely warns (on stderr, outside
#   the log) beyond ~89 M. The model needs 128x128: JPEGs are drafted (decoded at 1/2 … 1/8 scale in
#   the DCT domain) first, and then anything still above the pixel budget is refused unread.
# * A phone stores a portrait photo sideways with an EXIF Orientation tag that every viewer applies;
#   so do we, before the caller's crop and region of interest (which are in the upright picture).
# * Pillow's convert("RGB") clips 16-bit greyscale (I;16) to 255, a white frame, and truncates float
#   (F) pixels in 0..1 to 0, a black one: those are scaled to 8 bits here, or refused naming the mode.

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from edge.errors import SourceError

log = logging.getLogger("edge.model.decode")

# 16 M pixels: a 16 MP photo (RGBA worst case 64 MB, plus 48 MB as RGB) still fits beside the
# daemon on a 512 MB Pi; a JPEG of up to ~1 G pixels gets under it by drafting.
MAX_PIXELS = 16_000_000
ORIENTATION = 0x0112  # EXIF tag
_SIDEWAYS = (5, 6, 7, 8)  # orientations that turn the picture by 90 degrees: width and height swap
# What makes each stored orientation upright (as Pillow's ImageOps.exif_transpose does).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

# (width, height) of the upright picture -> the (width, height) the caller needs of it (for the draft)
Need = Callable[[int, int], tuple[int, int]]


def decode(path: Path, need: Need, draft: bool = True, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """The image file as an upright 8-bit RGB image. A JPEG is decoded at the smallest DCT scale that
    still covers `need` pixels; an image whose decoded size would exceed `max_pixels` is refused
    before decoding. SourceError (one line naming the file) for anything unreadable."""
    try:
        with open_image(path) as image:
            if image.format != "JPEG":  # Pillow's PNG getexif decodes all pixels looking for a late eXIf chunk
                bound(image, path, image.size, False, max_pixels)
            orientation = _orientation(image)
            width, height = image.size
            if orientation in _SIDEWAYS:
                width, height = height, width
            need_w, need_h = need(width, height)
            bound(image, path, (need_h, need_w) if orientation in _SIDEWAYS else (need_w, need_h), draft, max_pixels)
            image.load()
            rgb = to_rgb(image, path)
            if orientation in _UPRIGHT:
                return rgb.transpose(_UPRIGHT[orientation])
            return rgb.copy() if rgb is image else rgb  # closing the file frees its pixels
    except FileNotFoundError as exc:
        raise SourceError(f"{path}: no such image file") from exc
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise SourceError(f"{path}: not a readable image ({exc})") from exc


def open_image(path: Path) -> Image.Image:
    """Image.open (header only), with Pillow's DecompressionBombWarning sent to the log."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", Image.DecompressionBombWarning)
        image = Image.open(path)
    for w in caught:
        log.warning("%s: %s", path, w.message)
    return image


def bound(image: Image.Image, path: Path, need: tuple[int, int], draft: bool, max_pixels: int = MAX_PIXELS) -> None:
    """Draft a JPEG down to what still covers `need` (width, height) pixels, then refuse an image
    whose decoded size would still exceed `max_pixels`. Nothing is decoded here."""
    if draft and image.format == "JPEG":
        image.draft("RGB", need)
    width, height = image.size
    if width * height > max_pixels:
        raise SourceError(
            f"{path}: {width}x{height} pixels ({width * height / 1e6:.0f} M) is more than the decode budget of "
            f"{max_pixels / 1e6:g} M pixels (source.images.max_pixels); refused without decoding"
        )


def to_rgb(image: Image.Image, path: Path) -> Image.Image:
    """8-bit RGB: 16-bit integer pixels scaled by 255/65535 (a 16-bit copy of an 8-bit picture gives
    back exactly its bytes), float pixels in 0..1 by 255; other float or 32-bit ranges are refused."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I;16") or mode == "I":
        pixels = np.asarray(image).astype(np.int64)
        if pixels.size and (pixels.min() < 0 or pixels.max() > 65535):
            raise SourceError(f"{path}: 32-bit integer pixels (mode {mode}) outside 0..65535; save it as an 8- or 16-bit image")
        return _grey((pixels * 255 + 32767) // 65535)
    if mode == "F":
        pixels = np.asarray(image, np.float64)
        if pixels.size and not (np.isfinite(pixels).all() and pixels.min() >= 0.0 and pixels.max() <= 1.0):
            raise SourceError(f"{path}: floating-point pixels (mode F) outside 0..1 have no fixed brightness; save it as an 8- or 16-bit image")
        return _grey(np.rint(pixels * 255.0))
    return image.convert("RGB")


def _grey(values: np.ndarray) -> Image.Image:
    return Image.fromarray(values.astype(np.uint8), "L").convert("RGB")


def _orientation(image: Image.Image) -> int:
    """The EXIF Orientation (1 = upright; 2-8 = mirrored and/or turned), read from the header."""
    try:
        value = image.getexif().get(ORIENTATION, 1)
    except Exception:  # a damaged EXIF block is no reason to refuse the picture: use it as stored
        return 1
    return value if isinstance(value, int) else 1
