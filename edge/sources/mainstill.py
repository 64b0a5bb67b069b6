"""The Pi camera's stills: the main stream (YUV420) kept in a small ring of reused buffers, one per frame."""

# Why a ring with generations and not one buffer: the capture thread overwrites the buffer with the
# next frame while the pipeline still works on this one, and the snapshot writer makes the still later
# yet, in its own thread. Each frame's still names its generation; a generation's slot is reused
# SLOTS frames later. Reading is a seqlock: copy the slot, then check that no newer frame started to
# overwrite it meanwhile (`put` counts the generation up BEFORE it writes), else the still is gone
# (SourceError: counted as snapshots_view_errors). To make that rare, the pipeline thread calls
# `freeze` when it takes a snapshot (edge/daemon/snapshots.py `take`): one copy per snapshot, within
# a frame or two of the capture, so the writer's backlog does not matter. Per frame the cost is one
# np.copyto of main (460 KB at 640x480) into memory allocated once.

from __future__ import annotations

from functools import partial

import numpy as np
from PIL import Image

from edge.errors import SourceError
from edge.sources.still import Still, bounded
from edge.sources.yuv import make_converter

SLOTS = 3  # frames a still survives in the ring: the one being captured, the one in the mailbox, this one


class MainRing:
    """SLOTS preallocated copies of the main stream; `put` runs on the capture thread only."""

    def __init__(self) -> None:
        self._slots: list[np.ndarray] = []
        self.started = 0  # the newest generation whose copy has started (written or being written)

    def put(self, array: np.ndarray) -> int:
        """Copy `array` into the next slot (no allocation after the first frame); its generation."""
        if not self._slots or self._slots[0].shape != array.shape:
            self._slots = [np.empty(array.shape, np.uint8) for _ in range(SLOTS)]
            self.started += SLOTS  # every still of the old slots is gone
        self.started += 1
        np.copyto(self._slots[self.started % SLOTS], array)
        return self.started

    def copy(self, generation: int) -> np.ndarray:
        """A copy of `generation`'s frame, checked after copying that no newer frame overwrote it."""
        slots = self._slots
        if self.started - generation < SLOTS:
            out = slots[generation % SLOTS].copy()
            if self.started - generation < SLOTS and slots is self._slots:
                return out
        raise SourceError("picamera2: the main stream frame was overwritten before its snapshot took it")


def yuv_still(yuv: np.ndarray, size: tuple[int, int], stride: int, max_side: int) -> Image.Image:
    """The YUV420 main frame as RGB, longest side at most `max_side` (a converter per call: snapshots are rare)."""
    rgb = make_converter(*size, stride)(yuv)
    image = Image.fromarray(np.ascontiguousarray(rgb))  # fromarray may share memory: the converter's buffer
    target = bounded(*size, max_side)
    return image.resize(target, Image.Resampling.BILINEAR, reducing_gap=2.0) if target != size else image.copy()


class MainStill:
    """A frame's still (a ReusedStill): `freeze` (pipeline thread) copies the frame out of the ring; calling it makes the image."""

    def __init__(self, ring: MainRing, generation: int, size: tuple[int, int], stride: int) -> None:
        self.ring, self.generation, self.size, self.stride = ring, generation, size, stride

    def freeze(self) -> Still:
        """This still on a private copy, or itself when already overwritten (calling it then raises)."""
        try:
            return partial(yuv_still, self.ring.copy(self.generation), self.size, self.stride)
        except SourceError:
            return self

    def __call__(self, max_side: int) -> Image.Image:
        return yuv_still(self.ring.copy(self.generation), self.size, self.stride, max_side)
