"""Shared preprocessing: centre crop, bilinear resize to the model's input, uint8 RGB."""

# The same code prepares calibration images, evaluation images and camera frames, so the model
# sees on the device exactly what it was calibrated and measured on. Pillow does the pixel work in C;
# there is no per-pixel float arithmetic in Python.

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from edge.errors import SourceError
from edge.model import decode
from edge.model.contract import CROP_FRACTION, INPUT_SIZE
from edge.model.region import FULL, is_full, pixel_box, region_pixels, region_problem

log = logging.getLogger("edge.model.decode")
__all__ = ["CROP_FRACTION", "IMAGE_SUFFIXES", "INPUT_SIZE", "crop_box", "list_images", "load_image", "prepare", "prepare_array"]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def crop_box(width: int, height: int, fraction: float) -> tuple[float, float, float, float]:
    """The central `fraction` of each dimension, as a Pillow box (aspect ratio kept)."""
    dx = width * (1.0 - fraction) / 2.0
    dy = height * (1.0 - fraction) / 2.0
    return (dx, dy, width - dx, height - dy)


def prepare(image: Image.Image, size: int = INPUT_SIZE, fraction: float = CROP_FRACTION, roi: Sequence[float] = FULL) -> Image.Image:
    """Crop to the region of interest (fractions x, y, w, h of the frame), centre-crop inside it and
    bilinearly resize to size x size RGB."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    box = crop_box(*image.size, fraction) if is_full(roi) else pixel_box(*image.size, roi, fraction)
    return image.resize((size, size), Image.Resampling.BILINEAR, box=box)


def prepare_array(frame: np.ndarray, size: int = INPUT_SIZE, fraction: float = CROP_FRACTION, roi: Sequence[float] = FULL) -> np.ndarray:
    """Crop to the region, centre-crop and resize an HxWx3 uint8 RGB frame; returns size x size x 3 uint8."""
    if frame.shape[:2] == (size, size) and fraction >= 1.0 and is_full(roi):
        return frame
    return np.asarray(prepare(Image.fromarray(frame), size, fraction, roi))


def load_image(
    path: Path,
    size: int = INPUT_SIZE,
    fraction: float = CROP_FRACTION,
    draft: bool = True,
    roi: Sequence[float] = FULL,
    max_pixels: int = decode.MAX_PIXELS,
    warn_upscaled: bool = False,
) -> np.ndarray:
    """Decode an image file into the model's input (edge.model.decode: upright, 8-bit, bounded).

    JPEGs use libjpeg's draft mode at 1/2, 1/4 or 1/8 scale, as long as the cropped region still
    covers at least `size` pixels, so a 720p frame costs a fraction of a full decode. A region under
    one pixel of this picture is refused; one smaller than the model's input is upscaled, and with
    `warn_upscaled` (an answer somebody reads: classify, the daemon) a warning says so; the
    converter's ImageNet sets upscale their few small photos as ImageNet evaluation always did, and
    `train` refuses such images outright.
    """
    # Capped so a region of 1/65536 of the frame asks for no more than a full decode.
    need = (math.ceil(min(size / (fraction * roi[2]), 1e9)), math.ceil(min(size / (fraction * roi[3]), 1e9)))
    image = decode.decode(path, lambda w, h: need, draft, max_pixels)
    problem = region_problem(*image.size, roi, fraction)
    if problem:
        raise SourceError(f"{path}: {problem}")
    w, h = region_pixels(*image.size, roi, fraction)
    if warn_upscaled and min(w, h) < size:
        log.warning("%s: the model sees %.0fx%.0f pixels of it, upscaled to %dx%d: its answer means little", path, w, h, size, size)
    return np.asarray(prepare(image, size, fraction, roi))


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside `folder`, sorted by name for a deterministic order."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
