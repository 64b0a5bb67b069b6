"""Frame sources: the protocol, and a factory that imports each kind's dependency lazily."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from edge.config import SourceConfig
from edge.model.contract import CROP_FRACTION
from edge.model.region import Crop

if TYPE_CHECKING:
    from edge.sources.still import Still
    from edge.stats import SourceCounters


@dataclass
class Frame:
    """One frame already prepared for the model: 128x128x3 uint8 RGB."""

    pixels: np.ndarray
    ts: float = field(default_factory=time.time)  # capture or read time, epoch seconds
    origin: str = ""  # e.g. the file name, for logs and records
    # The frame's still: the whole frame as an RGB image whose longest side is at most the argument,
    # made only when called (an evidence snapshot): a source sets a cheap closure here
    # (edge/sources/still.py), so nothing is decoded, scaled or copied per frame. None: no still.
    still: Still | None = None


class Source(Protocol):
    """Yields prepared frames. `read` blocks until a frame is ready; None means the source is
    exhausted (end of a non-looping folder or file) or was interrupted. Recoverable faults are
    retried inside; `SourceError` means the source has failed for good.

    `live` sources (cameras, streams) produce frames whether or not anyone reads them, so the
    daemon keeps only the latest; the others (files) are read at the pace of inference.
    `interrupt` may be called from another thread to make a blocked `read` return None soon."""

    name: str
    live: bool

    def open(self) -> None: ...

    def read(self) -> Frame | None: ...

    def stats(self) -> SourceCounters: ...  # its own counters, e.g. read 10, skipped 2

    def interrupt(self) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class SourceSpec:
    """Everything a source is made from: the daemon makes one at start and at each reload, and a
    spec unlike the running source's means a new source."""

    config: SourceConfig
    crop_fraction: float = CROP_FRACTION  # the model's centre crop (its manifest's), applied inside config.roi
    # Snapshots on: a source whose stills cost something per frame (the Pi camera's main stream)
    # keeps them only then; the others make theirs on demand anyway.
    keep_still: bool = False
    # A fixed-camera model's view (its manifest's PNG strip, base64): watched for a moved camera (edge/sources/moved.py).
    view_references: str | None = None

    @property
    def crop(self) -> Crop:
        return Crop(self.config.roi, self.crop_fraction)


def make_source(spec: SourceSpec) -> Source:
    """The source `spec` describes, not yet opened; live ones watched for frozen frames (edge/sources/frozen.py)."""
    config = spec.config
    source = _make(config, spec.crop, spec.keep_still)
    if source.live and config.frozen_threshold >= 0:
        from edge.sources.frozen import FrozenGuard

        source = FrozenGuard(source, config.frozen_threshold, config.stall_timeout_s)
    if spec.view_references is not None and config.view_check_s >= 0:
        from edge.model.viewref import decode
        from edge.sources.moved import MovedGuard

        # Outside the frozen guard: it sees only frames that are handed on. The manifest's loader checked the strip.
        source = MovedGuard(source, decode(spec.view_references), config.view_check_s)
    return source


def _make(config: SourceConfig, crop: Crop, keep_still: bool) -> Source:
    """The configured source; its heavy dependency is imported here, lazily."""
    kind = config.kind
    if kind == "images":
        from edge.sources.images import ImagesSource

        return ImagesSource(config.images, crop)
    if kind == "synthetic":
        from edge.sources.synthetic import SyntheticSource

        return SyntheticSource(config.synthetic, crop)
    if kind == "video":
        from edge.sources.video import VideoSource

        return VideoSource(config.video, crop, config.stall_timeout_s)
    if kind == "v4l2":
        from edge.sources.v4l2 import V4l2Source

        return V4l2Source(config.v4l2, crop, config.stall_timeout_s, config.max_fps)
    if kind == "picamera2":
        from edge.sources.picamera2 import Picamera2Source

        return Picamera2Source(config.picamera2, crop, config.stall_timeout_s, keep_still)
    raise AssertionError(f"unknown source kind {kind!r}")  # config parsing rejects these
