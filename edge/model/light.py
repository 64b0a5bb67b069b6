"""The light a model was trained in (its manifest's light_range), a frame's brightness, and a vote on whether frames have left it."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass

import numpy as np

# `train` records the 5th and 95th percentile of its frames' brightness (mean Rec. 601 luma, 0-255,
# over all classes) as the manifest's light_range. Frames a little outside it are ordinary: the
# percentiles leave 10 % of the training frames out by construction, and a dark car in a highway
# crop takes a sixth off its brightness. So a frame counts as out of the trained light only beyond a
# margin. Measured on real footage (docs/design/light-check.md, `python -m benchmarks.light_check`):
# the later frames of four fixed-camera scenes stay within x1.19 below the range of their first half
# (the highway's cars; x1.44 against a range of its empty frames alone) and x1.04 above it; the same
# frames in 1/8 of the light come x1.98-2.15 below it, in 4 times the light (the encoding clips)
# x1.40-1.65 above. The margins sit between.
DARK_MARGIN = 1.5
BRIGHT_MARGIN = 1.25
# A state changes only when NEED of the last CHECKS checks agree: with source.light_check_s = 2 s,
# frames must stay out of (or back in) the trained light for about 20 s. A subject filling the view
# for a few seconds moves two or three checks; a light switched off is flagged 18-20 s later.
CHECKS = 12
NEED = 10
AS_TRAINED = "as trained"


def luma(frame: np.ndarray) -> float:
    """An H x W x 3 uint8 RGB frame's mean Rec. 601 luma, 0-255: the brightness `train` records. In
    integers (weights x1000), so exact on every CPU, and a quarter of the float mean's time."""
    pixels = frame.reshape(-1, 3)
    return int((pixels @ _WEIGHTS).sum()) / (1000 * len(pixels))


_WEIGHTS = np.array([299, 587, 114], np.int64)


@dataclass(frozen=True)
class LightRange:
    """The training frames' brightness, 5th to 95th percentile, 0-255."""

    lo: float
    hi: float
    dark_margin: float = DARK_MARGIN
    bright_margin: float = BRIGHT_MARGIN

    def verdict(self, brightness: float) -> str:
        """ "dark", "bright" or AS_TRAINED: beyond the margins, or not."""
        if brightness * self.dark_margin < self.lo:
            return "dark"
        if brightness > self.hi * self.bright_margin:
            return "bright"
        return AS_TRAINED

    def __str__(self) -> str:
        return f"{self.lo:.0f}-{self.hi:.0f}"


def range_problem(value: object) -> str:
    """ "" when `value` is a manifest's light_range ([lo, hi], 0 <= lo <= hi <= 255), else what is wrong."""
    import math

    if not isinstance(value, (list, tuple)) or len(value) != 2:
        return f"must be two numbers [lo, hi], got {value!r}"
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        return f"must be two numbers [lo, hi], got {list(value)!r}"
    lo, hi = value
    if not 0 <= lo <= hi <= 255:
        return f"must be 0 <= lo <= hi <= 255 (brightness, mean luma), got [{lo:g}, {hi:g}]"
    return ""


class LightVote:
    """The last CHECKS verdicts, and the state they settled on."""

    def __init__(self, trained: LightRange) -> None:
        self.trained = trained
        self.state = AS_TRAINED
        self._recent: deque[str] = deque(maxlen=CHECKS)

    def add(self, brightness: float) -> bool:
        """One check's brightness; True when the state changed with it."""
        self._recent.append(self.trained.verdict(brightness))
        state, votes = Counter(self._recent).most_common(1)[0]
        if votes < NEED or state == self.state:
            return False  # no clear majority yet, or no change
        self.state = state
        return True
