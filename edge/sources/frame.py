"""A frame as the model gets it, and the protocol every source follows."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

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
