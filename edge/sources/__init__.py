"""Frame sources: the protocol, one spec per source, and a factory that imports each kind's dependency lazily."""

from __future__ import annotations

from dataclasses import dataclass

from edge.config import SourceConfig
from edge.model.contract import CROP_FRACTION
from edge.model.light import LightRange
from edge.model.region import Crop
from edge.sources.frame import Frame, Source

__all__ = ["Frame", "Source", "SourceSpec", "make_source"]


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
    # The light the model was trained in (its manifest's light_range): watched for frames that leave it (edge/sources/light.py).
    light_range: LightRange | None = None

    @property
    def crop(self) -> Crop:
        return Crop(self.config.roi, self.crop_fraction)


def make_source(spec: SourceSpec) -> Source:
    """The source `spec` describes, not yet opened; live ones watched for frozen frames (edge/sources/frozen.py),
    a fixed-camera model's for a moved view (moved.py), a model's with a training light for frames out of it (light.py)."""
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
    if spec.light_range is not None and config.light_check_s >= 0:
        from edge.sources.light import LightGuard

        source = LightGuard(source, spec.light_range, config.light_check_s)
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
