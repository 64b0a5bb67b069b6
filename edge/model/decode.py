"""Bounded image decoding: the decoded size is checked from the header before any pixel is decoded."""

# A small file can declare a huge image (a 518 KB PNG of 13000x13000 decodes to 500 MB, more than a
# Pi Zero 2 W has). Pillow only refuses beyond ~179 M pixels, and merely warns (on stderr, outside
# the log) beyond ~89 M. The model needs 128x128: JPEGs are drafted (decoded at 1/2 … 1/8 scale in
# the DCT domain) first, and then anything still above the pixel budget is refused unread.

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from PIL import Image

from edge.errors import SourceError

log = logging.getLogger("edge.model.decode")

# 16 M pixels: a 16 MP photo (RGBA worst case 64 MB, plus 48 MB as RGB) still fits beside the
# daemon on a 512 MB Pi; a JPEG of up to ~1 G pixels gets under it by drafting.
MAX_PIXELS = 16_000_000


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
