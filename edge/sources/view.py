"""The larger view of a frame for evidence snapshots, made only when a snapshot is taken."""

# A source puts `functools.partial(file_view, path)` or `partial(av_view, frame)` on each Frame: the
# partial costs a small object per frame; the decode and scaling happen in the snapshot writer's
# thread, and only for the frames that are saved.

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from PIL import Image


def bounded(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(width, height) scaled down (never up) so the longer side is at most `max_side`."""
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def file_view(path: Path, max_side: int) -> Image.Image:
    """The image file again, whole and upright (edge.model.decode), decoded at a reduced scale when it is a JPEG (draft mode)."""
    from edge.model import decode

    rgb = decode.decode(path, lambda w, h: bounded(w, h, max_side))
    size = bounded(*rgb.size, max_side)
    if rgb.size != size:
        rgb = rgb.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return rgb


def av_view(frame: Any, max_side: int) -> Image.Image:
    """A decoded PyAV VideoFrame, scaled by swscale (the frame is reference-counted: holding it is free)."""
    w, h = bounded(frame.width, frame.height, max_side)
    w, h = max(2, math.floor(w / 2) * 2), max(2, math.floor(h / 2) * 2)  # even sizes for chroma-subsampled input
    image: Image.Image = frame.reformat(width=w, height=h, format="rgb24", interpolation="AREA").to_image()
    return image
