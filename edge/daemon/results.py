"""From scores to published results: top-k and threshold, smoothing, hysteresis, publish policy."""

# `top_k[0]` of a published result is the stable label: with smoothing and hysteresis it changes
# only when a new label has won (by the EMA margin or the N-of-M vote); the other entries are the
# next best classes of the (smoothed) scores. With the defaults (no smoothing, no hysteresis) the
# result is exactly the engine's top-k, ties going to the lower class index.

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

import numpy as np

from edge.model.contract import Prediction, top_k

if TYPE_CHECKING:
    from edge.config import ResultsConfig


class ResultFilter:
    """Feed it each frame's scores; it says what to publish, or None for nothing this frame."""

    def __init__(self, config: ResultsConfig, labels: tuple[str, ...]) -> None:
        self.config = config
        self.labels = labels
        self._ema = np.zeros(len(labels), np.float32)
        self._ema_started = False
        self._votes: deque[int] = deque(maxlen=config.vote_window)
        self._vote_counts = np.zeros(len(labels), np.int32)
        self._stable = -1  # the current stable class; -1 before the first frame
        self._published_label: int | None = None
        self._last_publish = -1e18

    def smooth(self, scores: np.ndarray) -> np.ndarray:
        """EMA of the probabilities (in place, no allocation), or the frame's own scores."""
        if self.config.smoothing != "ema":
            return scores
        if not self._ema_started:
            np.copyto(self._ema, scores)
            self._ema_started = True
        else:
            a = np.float32(self.config.ema_alpha)
            self._ema *= 1 - a
            self._ema += a * scores
        return self._ema

    def stable_label(self, scores: np.ndarray) -> int:
        """The label top_k[0] reports, after voting and hysteresis."""
        best = int(np.argmax(scores))
        cfg = self.config
        if cfg.smoothing == "vote":
            if len(self._votes) == self._votes.maxlen:
                self._vote_counts[self._votes[0]] -= 1
            self._votes.append(best)
            self._vote_counts[best] += 1
            winner = int(np.argmax(self._vote_counts))
            # A new label takes over only with vote_min of the last vote_window frames.
            if self._stable < 0 or (winner != self._stable and self._vote_counts[winner] >= cfg.vote_min):
                self._stable = winner
            return self._stable
        if self._stable < 0 or cfg.hysteresis <= 0 or scores[best] >= scores[self._stable] + cfg.hysteresis:
            self._stable = best
        return self._stable

    def predictions(self, scores: np.ndarray) -> tuple[Prediction, ...]:
        """Stable label first, then the best others; classes under the threshold dropped."""
        smoothed = self.smooth(scores)
        stable = self.stable_label(smoothed)
        k = self.config.top_k
        ranked = top_k(smoothed, self.labels, k + 1)
        first = Prediction(stable, self.labels[stable], float(smoothed[stable]))
        if first.score < self.config.threshold:
            return ()  # nothing confident enough: no label, rather than a runner-up posing as the stable one
        rest = [p for p in ranked if p.class_index != stable][: k - 1]
        return (first, *(p for p in rest if p.score >= self.config.threshold))

    def update(self, scores: np.ndarray, now: float) -> tuple[Prediction, ...] | None:
        """The predictions to publish for this frame, or None when the policy says skip.
        `now` is a monotonic time in seconds."""
        preds = self.predictions(scores)
        label = preds[0].class_index if preds else None  # None: nothing above the threshold
        cfg = self.config
        due = now - self._last_publish
        if cfg.publish == "every":
            publish = True
        elif cfg.publish == "change":
            publish = label != self._published_label or self._last_publish < -1e17
        else:
            publish = due >= cfg.interval_s
        if not publish and cfg.heartbeat_s > 0 and due >= cfg.heartbeat_s:
            publish = True
        if not publish:
            return None
        self._published_label = label
        self._last_publish = now
        return preds
