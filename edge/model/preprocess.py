"""Shared preprocessing: the crop (edge/model/region.py), bilinear resize to the model's input, uint8 RGB."""

# The same code prepares calibration images, evaluation images and camera frames, so the model
# sees on the device exactly what it was calibrated and measured on. Pillow does the pixel work in C;
# there is no per-pixel float arithmetic in Python.

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image

from edge.errors import SourceError
from edge.model import decode
from edge.model.contract import CROP_FRACTION, INPUT_SIZE
from edge.model.region import FULL, Crop, crop_box

log = logging.getLogger("edge.model.decode")
__all__ = ["CROP_FRACTION", "IMAGE_SUFFIXES", "INPUT_SIZE", "STOCK_CROP", "crop_box", "list_images", "load_image", "prepare", "prepare_array"]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
STOCK_CROP = Crop(FULL, CROP_FRACTION)  # the whole frame, centre-cropped as the stock model was calibrated


def prepare(image: Image.Image, crop: Crop = STOCK_CROP, size: int = INPUT_SIZE) -> Image.Image:
    """Cut the crop (the region of interest, the centre crop inside it) and bilinearly resize to size x size RGB."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    return image.resize((size, size), Image.Resampling.BILINEAR, box=crop.box(*image.size))


def prepare_array(frame: np.ndarray, crop: Crop = STOCK_CROP, size: int = INPUT_SIZE) -> np.ndarray:
    """`prepare` for an HxWx3 uint8 RGB frame; returns size x size x 3 uint8."""
    if frame.shape[:2] == (size, size) and crop.whole:
        return frame
    return np.asarray(prepare(Image.fromarray(frame), crop, size))


def load_image(
    path: Path,
    crop: Crop = STOCK_CROP,
    size: int = INPUT_SIZE,
    draft: bool = True,
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
    need = crop.need(size)
    image = decode.decode(path, lambda w, h: need, draft, max_pixels)
    problem = crop.problem(*image.size)
    if problem:
        raise SourceError(f"{path}: {problem}")
    w, h = crop.pixels(*image.size)
    if warn_upscaled and min(w, h) < size:
        log.warning("%s: the model sees %.0fx%.0f pixels of it, upscaled to %dx%d: its answer means little", path, w, h, size, size)
    return np.asarray(prepare(image, crop, size))


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside `folder`, sorted by name for a deterministic order."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
