"""Moved-camera guard: how far the view has shifted from the frames a scene model was trained on."""

# A scene-2x model (edge/train/scene.py) scores what differs from the empty scene as trained: a
# camera nudged by a few pixels makes every edge differ, and its answers degrade (docs/train.md:
# 3-8.5 points on the bird task at 2-8 px) with nothing in the results to show it. So its manifest
# carries small grey references of the empty scene (edge/model/viewref.py), and every
# source.view_check_s the guard estimates the current frame's translation against the nearest one
# by phase correlation (the peak of the inverse FFT of the normalised cross-power spectrum:
# brightness and contrast drop out, so daylight does not look like a move). A subject in the view, a passing shadow or one odd frame must not
# raise an alarm: the state changes only when most of the last CHECKS estimates agree, and each
# change is logged once.

from __future__ import annotations

import logging
import time
from collections import deque

import numpy as np

from edge.model.viewref import SIDE, grey
from edge.sources import Frame, Source

log = logging.getLogger("edge.sources.moved")

# Measured on the bench's bird task (docs/train.md, `train_bench --only nudge`): held-out frames
# against their references match at 0.98 (lowest 0.47) with shifts of at most 0.07 px; nudged by
# 2 / 4 / 8 px (a crop from the corner, rescaled), 1.3 / 2.8 / 5.6 px, match 0.40 / 0.71 / 0.37
# (lowest 0.18); 60 other dev-set scenes match at 0.10 (90 % below 0.11). The 2 px nudge already
# costs the scene head 6 points on present frames, so 1 px counts as moved.
MOVED_PX = 1.0  # of the 128 px input
MIN_PEAK = 0.15  # below this the frame matches no reference at any shift
CHECKS = 5  # estimates kept; a state needs a majority of them


class ShiftEstimator:
    """Phase correlation of a frame against K references; the references' spectra are computed once."""

    def __init__(self, references: np.ndarray) -> None:
        self._window = np.outer(np.hanning(SIDE), np.hanning(SIDE)).astype(np.float32)
        self._spectra = [np.conj(np.fft.rfft2(self._prepared(r))) for r in references]  # real input: half the spectrum

    def _prepared(self, g: np.ndarray) -> np.ndarray:
        out: np.ndarray = (g - g.mean()) * self._window
        return out

    def estimate(self, frame: np.ndarray) -> tuple[float, float]:
        """(shift in px of the 128 px input, peak 0..1) against the best-matching reference."""
        spectrum = np.fft.rfft2(self._prepared(grey(frame)))
        best = (0.0, -1.0)
        for ref in self._spectra:
            cross = spectrum * ref
            corr = np.fft.irfft2(cross / (np.abs(cross) + 1e-6), s=(SIDE, SIDE))
            iy, ix = np.unravel_index(int(np.argmax(corr)), corr.shape)
            peak = float(corr[iy, ix])
            if peak > best[1]:
                dy, dx = _refine(corr[:, ix], int(iy)), _refine(corr[iy, :], int(ix))
                best = (2.0 * float(np.hypot(dy, dx)), peak)
        return best


def _refine(line: np.ndarray, i: int) -> float:
    """The peak's signed offset along `line`, to a fraction of a pixel (a parabola through 3 points)."""
    a, b, c = line[(i - 1) % SIDE], line[i], line[(i + 1) % SIDE]
    curvature = a - 2 * b + c
    offset = i + (float(np.clip(0.5 * (a - c) / curvature, -0.5, 0.5)) if curvature < 0 else 0.0)
    return offset - SIDE if offset > SIDE / 2 else offset


class MovedGuard:
    """Wraps a source for a scene model; its stats gain `view_shift_px` (the last estimate, rounded),
    `view_moved` (times the view was found moved or unlike the training frames) and `view_off` (1
    while it is, for `mnv1-edge fleet`)."""

    def __init__(self, source: Source, references: np.ndarray, every_s: float) -> None:
        self.source = source
        self.name = source.name
        self.live = source.live
        self.every_s = every_s
        self._estimator = ShiftEstimator(references)
        self._recent: deque[str] = deque(maxlen=CHECKS)
        self._state = "as trained"
        self._checked_at = -float("inf")
        self._shift = 0.0
        self._moved = 0

    def open(self) -> None:
        self.source.open()

    def read(self) -> Frame | None:
        frame = self.source.read()
        now = time.monotonic()
        if frame is not None and now - self._checked_at >= self.every_s:
            self._checked_at = now
            self._check(frame.pixels)
        return frame

    def _check(self, pixels: np.ndarray) -> None:
        shift, peak = self._estimator.estimate(pixels)
        self._shift = shift
        self._recent.append("unlike the training frames" if peak < MIN_PEAK else "moved" if shift >= MOVED_PX else "as trained")
        state = max(set(self._recent), key=list(self._recent).count)
        if list(self._recent).count(state) * 2 <= CHECKS or state == self._state:
            return  # no majority yet, or no change
        self._state = state
        if state == "as trained":
            log.warning("%s: the view is back where the model was trained", self.name)
            return
        self._moved += 1
        what = f"moved by about {shift:.0f} px of 128" if state == "moved" else f"unlike the model's training frames (match {peak:.2f})"
        log.warning(
            "%s: the view is %s since the model was trained; a scene model's answers degrade: capture the empty scene and train again",
            self.name,
            what,
        )

    def stats(self) -> dict[str, int]:
        off = int(self._state != "as trained")
        return {**self.source.stats(), "view_shift_px": round(self._shift), "view_moved": self._moved, "view_off": off}

    def interrupt(self) -> None:
        self.source.interrupt()

    def close(self) -> None:
        self.source.close()
