"""Frozen-frame guard for live sources: frames that stop changing for stall_timeout_s reopen the source."""

# A camera or stream can keep delivering the same frame for hours (a hung ISP pipeline, a decoder
# repeating its last picture, an IP camera serving a cached JPEG) while the daemon's "no frame"
# stall timer sees frames flowing. Real sensors are never noise-free: consecutive frames of a static
# scene differ by a few tenths of a level even after the ISP's denoise and the downscale to 128x128
# (docs/design/arm-cost.md has the measurement behind the default threshold), so "no change at all, or less
# than that noise" for stall_timeout_s means the pictures are no longer coming from the sensor.
#
# Once frozen, frames are withheld (not handed to the daemon) and the source is reopened, at most once
# per stall_timeout_s. If reopening does not help, the daemon's own stall timer fires (no frame for
# stall_timeout_s), the watchdog pings stop and systemd restarts the service.

from __future__ import annotations

import logging
import time
from dataclasses import replace

import numpy as np

from edge.sources.frame import Frame, Source
from edge.stats import SourceCounters

log = logging.getLogger("edge.sources.frozen")

STEP = 193  # compare every 193rd byte: 255 samples of a 128x128x3 frame, spread over rows, columns and channels


def _sample(pixels: np.ndarray) -> np.ndarray:
    return pixels.reshape(-1)[::STEP]  # a view for the contiguous frames every source hands over


class FrameDiff:
    """Mean absolute difference (0-255 levels) between a frame and a reference, on a sparse grid.
    With threshold 0 (the default) it only asks "identical?": one 768-byte copy and a bytes compare."""

    def __init__(self) -> None:
        self._ref: np.ndarray | None = None
        self._diff: np.ndarray | None = None
        self._ref_bytes = b""

    def distance(self, pixels: np.ndarray) -> float:
        sample = _sample(pixels)
        if self._ref is None or self._ref.shape != sample.shape or self._diff is None:
            self.reset(pixels)
            return float("inf")
        np.subtract(sample, self._ref, out=self._diff, dtype=np.int16)
        np.abs(self._diff, out=self._diff)
        return float(self._diff.sum()) / self._diff.size

    def reset(self, pixels: np.ndarray) -> None:
        sample = _sample(pixels)
        self._ref = sample.astype(np.int16)
        self._diff = np.empty_like(self._ref)

    def changed(self, pixels: np.ndarray, threshold: float) -> bool:
        """True (and `pixels` becomes the reference) when it differs from the reference by > threshold."""
        if threshold <= 0:  # the cheap exact test: a third of the instructions of the NumPy arithmetic
            data = _sample(pixels).tobytes()
            if data == self._ref_bytes:
                return False
            self._ref_bytes = data
            return True
        if self.distance(pixels) > threshold:
            assert self._ref is not None
            np.copyto(self._ref, _sample(pixels))
            return True
        return False


class FrozenGuard:
    """Wraps a live source; its stats gain `frozen` (freezes detected) and `frozen_reopens`."""

    def __init__(self, source: Source, threshold: float, timeout_s: float) -> None:
        self.source = source
        self.name = source.name
        self.live = source.live
        self.threshold = threshold
        self.timeout_s = timeout_s
        self._diff = FrameDiff()
        self._changed_at = time.monotonic()
        self._reopened_at = 0.0
        self._frozen = False
        self._freezes = 0
        self._reopens = 0

    def open(self) -> None:
        self.source.open()
        self._changed_at = time.monotonic()

    def read(self) -> Frame | None:
        while True:
            frame = self.source.read()
            if frame is None:
                return None
            now = time.monotonic()
            if self._diff.changed(frame.pixels, self.threshold):
                if self._frozen:
                    log.warning("%s: frames are changing again", self.name)
                self._frozen = False
                self._changed_at = now
                return frame
            if now - self._changed_at < self.timeout_s:
                return frame  # a still scene for a moment; only a long freeze counts
            if not self._frozen:
                self._frozen = True
                self._freezes += 1
                log.warning(
                    "%s: frames unchanged (within %g levels) for %.0f s (source.stall_timeout_s): frozen; reopening it",
                    self.name,
                    self.threshold,
                    now - self._changed_at,
                )
            if now - self._reopened_at >= self.timeout_s:
                self._reopened_at = now
                self._reopens += 1
                # Closing is enough: every live source reopens itself, with back-off, on its next read.
                self.source.close()
            # A frozen frame is not handed on: the daemon's stall timer then sees the stall too.

    def stats(self) -> SourceCounters:
        return replace(self.source.stats(), frozen=self._freezes, frozen_reopens=self._reopens)

    def interrupt(self) -> None:
        self.source.interrupt()

    def close(self) -> None:
        self.source.close()
