"""Synthetic source: deterministic frames for tests and benchmarks, without per-frame allocation."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from edge.model.preprocess import prepare_array
from edge.model.region import NO_CROP, Crop
from edge.sources.frame import Frame
from edge.stats import SourceCounters

if TYPE_CHECKING:
    from edge.config import SyntheticSourceConfig

POOL = 8  # distinct frames cycled through; more than the daemon can hold at once (3)


class SyntheticSource:
    """Cycles through a small pool of seeded random 128x128 frames (smooth gradients plus noise,
    so the model's activations are not degenerate); `fps` > 0 paces them like a camera. The crop's
    region of interest is cut from each pooled frame once, at open (the whole frame: the frames as
    they are); the centre crop is not: the frames are made at the model's size already."""

    def __init__(self, config: SyntheticSourceConfig, crop: Crop = NO_CROP) -> None:
        self.config = config
        self.crop = replace(crop, fraction=1.0)
        self.name = f"synthetic:seed={config.seed}"
        self.live = config.fps > 0
        self._pool: list[np.ndarray] = []
        self._count = 0
        self._next_t = 0.0
        self._stop = threading.Event()

    def open(self) -> None:
        rng = np.random.default_rng(self.config.seed)
        ramp = np.linspace(0, 255, 128, dtype=np.float32)
        self._pool = []
        for i in range(POOL):
            base = (ramp[:, None, None] * (i % 3 == 0) + ramp[None, :, None] * (i % 3 != 0)) * 0.6
            noise = rng.integers(0, 100, size=(128, 128, 3)).astype(np.float32)
            self._pool.append(prepare_array(np.clip(base + noise, 0, 255).astype(np.uint8), self.crop, 128))
        self._next_t = time.monotonic()

    def read(self) -> Frame | None:
        if self.config.frames and self._count >= self.config.frames:
            return None
        if self.config.fps > 0:
            delay = self._next_t - time.monotonic()  # the first frame comes at once
            self._next_t = max(self._next_t, time.monotonic() - 1.0) + 1.0 / self.config.fps
            if delay > 0 and self._stop.wait(delay):
                return None
        if self._stop.is_set():
            return None
        pixels = self._pool[self._count % POOL]
        self._count += 1
        return Frame(pixels, time.time(), f"synthetic#{self._count}")

    def stats(self) -> SourceCounters:
        return SourceCounters(self._count)

    def interrupt(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self._pool = []
