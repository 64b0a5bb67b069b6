"""A source wrapper that looks at one frame every few seconds and passes everything through: the moved-camera and light guards."""

from __future__ import annotations

import time

import numpy as np

from edge.sources.frame import Frame, Source
from edge.stats import SourceCounters


class PeriodicGuard:
    """`check` sees the pixels of the first frame read after every `every_s` seconds (0: every
    frame); a subclass adds its own figures to `stats`."""

    def __init__(self, source: Source, every_s: float) -> None:
        self.source = source
        self.name = source.name
        self.live = source.live
        self.every_s = every_s
        self._checked_at = -float("inf")

    def check(self, pixels: np.ndarray) -> None:
        raise NotImplementedError

    def open(self) -> None:
        self.source.open()

    def read(self) -> Frame | None:
        frame = self.source.read()
        now = time.monotonic()
        if frame is not None and now - self._checked_at >= self.every_s:
            self._checked_at = now
            self.check(frame.pixels)
        return frame

    def stats(self) -> SourceCounters:
        return self.source.stats()

    def interrupt(self) -> None:
        self.source.interrupt()

    def close(self) -> None:
        self.source.close()
