"""What of a frame the model sees (`Crop`): a pixel box, the pixels a source needs, or a libcamera ScalerCrop rectangle."""

# One decision for every source: the model looks at `source.roi` (fractions of the full frame), and
# the model's own centre crop (its manifest's crop_fraction) applies inside the region, so a region
# drawn round a bird feeder is framed the way the model was calibrated and measured (centre-cropped
# ImageNet photos), and the default whole-frame region gives exactly the frames of before.
#
# Files and decoded streams crop in software (`pixel_box`, before the resize). A Pi camera crops in
# the ISP: `scaler_crop` turns the region into the ScalerCrop rectangle (sensor pixels) from the
# camera's full field of view, camera_controls["ScalerCrop"][1], each edge rounded to the nearest
# sensor pixel (the closest match to the software crop of the same picture), then
# applying the rules of libcamera's RPi applyScalerCrop (src/libcamera/pipeline/rpi/common/
# pipeline_base.cpp): grown to at least the minimum crop (camera_controls["ScalerCrop"][0], widened
# to the region's aspect ratio) about the same centre, and moved inside the full rectangle. The ISP
# scales the crop to the stream size without keeping its aspect ratio, as the software path stretches
# its box to 128x128, so both give the model the same view.
#
# What the picamera2 source must do (after every configure, also after a reopen):
#   full, minimum = cam.camera_controls["ScalerCrop"][1], cam.camera_controls["ScalerCrop"][0]
#   crop = scaler_crop(roi, full, minimum[2:])          # fraction=1: the centre crop stays in software
#   Pi 5 (PiSP; "ScalerCrops" in cam.camera_controls): picamera2's configure() sets per-stream
#     ScalerCrops ([main, lores] in configured order), and libcamera prefers those to ScalerCrop, so
#     set cam.set_controls({"ScalerCrops": [crop, crop]}) — setting ScalerCrop alone changes nothing.
#   Pi 4 and earlier (VC4): cam.set_controls({"ScalerCrop": crop}) (one crop for every stream).
#   Then the lores frame is the model's input as it is (Crop.after_isp: nothing left to cut in
#   software). The frame's metadata "ScalerCrop"/"ScalerCrops" says what was applied.

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Roi = tuple[float, float, float, float]  # x, y, width, height as fractions of the full frame
Rect = tuple[int, int, int, int]  # x, y, width, height in sensor pixels (libcamera Rectangle)
FULL: Roi = (0.0, 0.0, 1.0, 1.0)


def is_full(roi: Sequence[float]) -> bool:
    return tuple(roi) == FULL


@dataclass(frozen=True)
class Crop:
    """What of a frame the model sees: the region of interest (`source.roi`, `--roi`: fractions x,
    y, w, h of the frame), then the model's centre crop (its manifest's crop_fraction) inside it.
    One value for every source, classify, capture and the images the converter and train read."""

    roi: Roi = FULL
    fraction: float = 1.0

    @property
    def whole(self) -> bool:
        """Nothing is cut: the frame as it is (only resized)."""
        return self.fraction >= 1.0 and is_full(self.roi)

    def box(self, width: int, height: int) -> tuple[float, float, float, float]:
        """A Pillow box (left, top, right, bottom) in pixels of a width x height frame."""
        return crop_box(width, height, self.fraction) if is_full(self.roi) else pixel_box(width, height, self.roi, self.fraction)

    def pixels(self, width: int, height: int) -> tuple[float, float]:
        """The size in pixels of what the model looks at in a width x height frame."""
        return region_pixels(width, height, self.roi, self.fraction)

    def problem(self, width: int, height: int) -> str:
        """ "" when the crop covers at least one pixel of a width x height frame, else why not."""
        return region_problem(width, height, self.roi, self.fraction)

    def need(self, size: int) -> tuple[int, int]:
        """The smallest frame (width, height) whose crop still covers size x size pixels: how far a
        JPEG may be drafted, a video frame scaled down, or how small a webcam mode may be. Capped so
        a region of 1/65536 of the frame asks for no more than a full decode."""
        w, h = self.roi[2], self.roi[3]
        return (math.ceil(min(size / (self.fraction * w), 1e9)), math.ceil(min(size / (self.fraction * h), 1e9)))

    def scaler_crop(self, full: Sequence[int], minimum: Sequence[int] = (1, 1)) -> Rect:
        """The Pi camera's ScalerCrop showing this crop of the field of view `full` (see scaler_crop)."""
        return scaler_crop(self.roi, full, minimum, self.fraction)


NO_CROP = Crop()  # what is left to cut once the ISP cut the crop (a Pi camera's lores stream)


def crop_box(width: int, height: int, fraction: float) -> tuple[float, float, float, float]:
    """The central `fraction` of each dimension, as a Pillow box (aspect ratio kept)."""
    dx = width * (1.0 - fraction) / 2.0
    dy = height * (1.0 - fraction) / 2.0
    return (dx, dy, width - dx, height - dy)


def inner(roi: Sequence[float], fraction: float) -> Roi:
    """The central `fraction` of each dimension of the region, still as frame fractions."""
    x, y, w, h = roi
    return (x + w * (1 - fraction) / 2, y + h * (1 - fraction) / 2, w * fraction, h * fraction)


def pixel_box(width: int, height: int, roi: Sequence[float] = FULL, fraction: float = 1.0) -> tuple[float, float, float, float]:
    """A Pillow box (left, top, right, bottom) in pixels: the region, then its central `fraction`.
    Fractional pixels are kept: Pillow's resize samples a sub-pixel box exactly."""
    x, y, w, h = inner(roi, fraction)
    return (x * width, y * height, (x + w) * width, (y + h) * height)


def parse_roi(text: str, where: str = "--roi") -> Roi:
    """ "x,y,w,h" fractions, checked as source.roi is; ValueError with a one-line message."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4:
        raise ValueError(f"{where}: expected x,y,width,height as four fractions, got {text!r}")
    problem = roi_problem(values)
    if problem:
        raise ValueError(f"{where}: {problem}")
    return (values[0], values[1], values[2], values[3])


# No picture is wider or taller than this (JPEG's limit; the decode budget refuses larger PNGs), so
# a region narrower than 1/MAX_SIDE of the frame is under one pixel of any frame.
MAX_SIDE = 65536


def roi_problem(roi: Sequence[float]) -> str:
    """Why `roi` (x, y, w, h fractions) is not a region of the frame, or "" when it is: the one check
    for source.roi and --roi (region_problem checks it again on each picture's pixels)."""
    x, y, w, h = roi
    if not all(math.isfinite(v) and 0 <= v <= 1 for v in roi):
        return f"every value must be between 0 and 1, got {list(roi)}"
    if w <= 0 or h <= 0:
        return f"width and height must be greater than 0, got {list(roi)}"
    if min(w, h) * MAX_SIDE < 1:
        return f"width and height must be at least 1/{MAX_SIDE} (a region under one pixel of any frame), got {list(roi)}"
    # A small tolerance: 0.1 + 0.9 is 1.0000000000000002 in binary floating point.
    if x + w > 1 + 1e-9 or y + h > 1 + 1e-9:
        return f"must lie inside the frame (x + width and y + height at most 1), got {list(roi)}"
    return ""


def region_pixels(width: int, height: int, roi: Sequence[float] = FULL, fraction: float = 1.0) -> tuple[float, float]:
    """The size in pixels of what the model looks at in a width x height frame: the region, then its
    central `fraction`."""
    return (width * roi[2] * fraction, height * roi[3] * fraction)


def region_problem(width: int, height: int, roi: Sequence[float] = FULL, fraction: float = 1.0) -> str:
    """ "" when the region covers at least one pixel of this frame, else why not."""
    w, h = region_pixels(width, height, roi, fraction)
    if min(w, h) >= 1:
        return ""
    where = f"the region {list(roi)} (after the model's {fraction:g} centre crop)"
    return f"{where} is {w:.2g}x{h:.2g} pixels of this {width}x{height} picture: under one pixel; choose a larger region"


def scaler_crop(roi: Sequence[float], full: Sequence[int], minimum: Sequence[int] = (1, 1), fraction: float = 1.0) -> Rect:
    """The ScalerCrop (x, y, w, h in sensor pixels) that shows `roi` of the field of view `full`, as
    libcamera will apply it; `minimum` is the smallest crop size the ISP takes (w, h)."""
    fx, fy, fw, fh = inner(roi, fraction)
    X, Y, W, H = (int(v) for v in full)
    # Each edge rounded to the nearest sensor pixel (rpicam-apps truncates x, y, w and h instead):
    # the rectangle closest to the box the software path cuts from a file of the same picture.
    x, y = _nearest(fx * W) + X, _nearest(fy * H) + Y
    w, h = max(1, _nearest((fx + fw) * W) + X - x), max(1, _nearest((fy + fh) * H) + Y - y)
    # libcamera: Size minSize = ispMinCropSize.expandedToAspectRatio(crop); size = crop.expandedTo(minSize)
    mw, mh = _expanded_to_aspect(int(minimum[0]), int(minimum[1]), w, h)
    cx, cy = x + w // 2, y + h // 2  # Rectangle::center()
    w, h = max(w, mw), max(h, mh)
    # size.centeredTo(center).enclosedIn(full)
    w, h = min(w, W), min(h, H)
    x, y = cx - w // 2, cy - h // 2
    x = min(max(x, X), X + W - w)
    y = min(max(y, Y), Y + H - h)
    return (x, y, w, h)


def _nearest(value: float) -> int:
    """Round half up (Python's round() goes to even, which would shift edges unevenly)."""
    return math.floor(value + 0.5)


def _expanded_to_aspect(width: int, height: int, ratio_w: int, ratio_h: int) -> tuple[int, int]:
    """libcamera Size::expandedToAspectRatio: the smallest size of the ratio's aspect holding this one."""
    r1, r2 = width * ratio_h, ratio_w * height
    if r1 < r2:
        return (r2 // ratio_h, height)
    return (width, r1 // ratio_w)
