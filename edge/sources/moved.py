"""Moved-camera guard: how far the view has shifted from the one a fixed-camera model was trained on."""

# A model trained on one camera's frames learns that view: nudged by a few pixels, its answers
# degrade (docs/design/train.md: the scene head loses 3-8.5 points on the bird task at 2-8 px, the
# per-position head as much) with nothing in the results to show it. So `train` puts small grey
# references of the view into the manifest when its frames show one (edge/train/view.py), and
# every source.view_check_s the guard estimates the current frame's translation against the
# nearest one by phase correlation (edge/model/viewref.py: light changes drop out). A subject
# filling the view, a passing shadow or one odd frame must not raise an alarm: the state changes
# only when most of the last CHECKS estimates agree, and each change is logged once.

from __future__ import annotations

import logging
from collections import Counter, deque
from dataclasses import replace

import numpy as np

from edge.model.viewref import MIN_PEAK, MOVED_PX, ShiftEstimator
from edge.sources.frame import Source
from edge.sources.guard import PeriodicGuard
from edge.stats import SourceCounters

log = logging.getLogger("edge.sources.moved")

CHECKS = 5  # estimates kept; a state needs a majority of them


class MovedGuard(PeriodicGuard):
    """Wraps a source for a fixed-camera model; its stats gain `view_shift_px` (the last estimate, rounded),
    `view_moved` (times the view was found moved or unlike the training frames) and `view_off` (1
    while it is, for `mnv1-edge fleet`)."""

    def __init__(self, source: Source, references: np.ndarray, every_s: float) -> None:
        super().__init__(source, every_s)
        self._estimator = ShiftEstimator(references)
        self._recent: deque[str] = deque(maxlen=CHECKS)
        self._state = "as trained"
        self._shift = 0.0
        self._moved = 0

    def check(self, pixels: np.ndarray) -> None:
        shift, peak = self._estimator.estimate(pixels)
        self._shift = shift
        self._recent.append("unlike the training frames" if peak < MIN_PEAK else "moved" if shift >= MOVED_PX else "as trained")
        state, votes = Counter(self._recent).most_common(1)[0]
        if votes * 2 <= CHECKS or state == self._state:
            return  # no majority yet, or no change
        self._state = state
        if state == "as trained":
            log.warning("%s: the view is back where the model was trained", self.name)
            return
        self._moved += 1
        what = f"moved by about {shift:.0f} px of 128" if state == "moved" else f"unlike the model's training frames (match {peak:.2f})"
        log.warning(
            "%s: the view is %s since the model was trained; its answers degrade: capture frames again and train again",
            self.name,
            what,
        )

    def stats(self) -> SourceCounters:
        off = int(self._state != "as trained")
        return replace(self.source.stats(), view_shift_px=round(self._shift), view_moved=self._moved, view_off=off)
