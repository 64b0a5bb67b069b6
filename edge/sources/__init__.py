"""Frame sources: the protocol, and a factory that imports each kind's dependency lazily."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from edge.config import SourceConfig


@dataclass
class Frame:
    """One frame already prepared for the model: 128x128x3 uint8 RGB."""

    pixels: np.ndarray
    ts: float = field(default_factory=time.time)  # capture or read time, epoch seconds
    origin: str = ""  # e.g. the file name, for logs and records


class Source(Protocol):
    """Yields prepared frames. `read` blocks until a frame is ready; None means the source is
    exhausted (end of a non-looping folder or file). Recoverable faults are retried inside;
    `SourceError` means the source has failed for good."""

    name: str

    def open(self) -> None: ...

    def read(self) -> Frame | None: ...

    def stats(self) -> dict[str, int]: ...  # e.g. {"skipped": 2, "reconnects": 1}

    def close(self) -> None: ...


def make_source(config: SourceConfig) -> Source:
    raise NotImplementedError("filled in by the daemon issue")
