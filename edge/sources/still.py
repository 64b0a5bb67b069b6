"""A frame's still: the whole frame as a picture for an evidence snapshot, made only when a snapshot is taken."""

# A source puts `functools.partial(file_still, path)` or `partial(av_still, frame)` on each Frame: the
# partial costs a small object per frame; the decode and scaling happen in the snapshot writer's
# thread, and only for the frames that are saved. (Not to be confused with the view a fixed-camera
# model was trained on, edge/model/viewref.py: where the camera points.) The snapshot folder keeps
# a still as <stem>-view.jpg, the name users and their scripts know.

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from PIL import Image

Still = Callable[[int], Image.Image]  # the whole frame as RGB, its longest side at most the argument


@runtime_checkable
class ReusedStill(Protocol):
    """A still on a buffer the source reuses (the Pi camera's main stream, edge/sources/mainstill.py):
    `freeze` copies it out now, while it is still there."""

    def __call__(self, max_side: int) -> Image.Image: ...

    def freeze(self) -> Still: ...


def bounded(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(width, height) scaled down (never up) so the longer side is at most `max_side`."""
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def file_still(path: Path, max_side: int) -> Image.Image:
    """The image file again, whole and upright (edge.model.decode), decoded at a reduced scale when it is a JPEG (draft mode)."""
    from edge.model import decode

    rgb = decode.decode(path, lambda w, h: bounded(w, h, max_side))
    size = bounded(*rgb.size, max_side)
    if rgb.size != size:
        rgb = rgb.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return rgb


def av_still(frame: Any, max_side: int) -> Image.Image:
    """A decoded PyAV VideoFrame, scaled by swscale (the frame is reference-counted: holding it is free)."""
    w, h = bounded(frame.width, frame.height, max_side)
    w, h = max(2, math.floor(w / 2) * 2), max(2, math.floor(h / 2) * 2)  # even sizes for chroma-subsampled input
    image: Image.Image = frame.reformat(width=w, height=h, format="rgb24", interpolation="AREA").to_image()
    return image
