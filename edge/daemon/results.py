"""From scores to published results: top-k, the answer (a group or the top label), smoothing, hysteresis, publish policy."""

# `top_k[0]` of a published result is the stable label: with smoothing and hysteresis it changes
# only when a new label has won (by the EMA margin or the N-of-M vote); the other entries are the
# next best classes of the (smoothed) scores. With smoothing = "none" and no hysteresis the result
# is exactly the engine's top-k, ties going to the lower class index.
#
# The answer: with results.groups configured, the group scores (configured groups + `other`) go
# through the same smoothing and hysteresis as a vector of their own, and the answer is the stable
# group, or "none" when its score is under results.threshold; without groups it is the stable
# label (top_k[0]), or "none" when nothing passes the threshold. publish = "change" publishes when
# the answer changes.

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from edge.model.contract import Prediction, top_k
from edge.model.groups import NONE, GroupScore, GroupScorer

if TYPE_CHECKING:
    from edge.config import ResultsConfig


@dataclass(frozen=True)
class Result:
    top_k: tuple[Prediction, ...]
    answer: str
    groups: tuple[GroupScore, ...] = ()  # best first; () without configured groups
    changed: bool = False  # the answer differs from the last published one (or nothing was published yet)


class Tracker:
    """EMA or N-of-M vote, and hysteresis, over one score vector (class or group scores)."""

    def __init__(self, config: ResultsConfig, size: int) -> None:
        self.config = config
        self._ema = np.zeros(size, np.float32)
        self._ema_started = False
        self._votes: deque[int] = deque(maxlen=config.vote_window)
        self._vote_counts = np.zeros(size, np.int32)
        self._stable = -1  # the current stable entry; -1 before the first frame

    def smooth(self, scores: np.ndarray) -> np.ndarray:
        """EMA of the scores (in place, no allocation), or the frame's own scores."""
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

    def stable(self, scores: np.ndarray) -> int:
        """The stable entry, after voting and hysteresis."""
        best = int(np.argmax(scores))
        cfg = self.config
        if cfg.smoothing == "vote":
            if len(self._votes) == self._votes.maxlen:
                self._vote_counts[self._votes[0]] -= 1
            self._votes.append(best)
            self._vote_counts[best] += 1
            winner = int(np.argmax(self._vote_counts))
            # A new entry takes over only with vote_min of the last vote_window frames.
            if self._stable < 0 or (winner != self._stable and self._vote_counts[winner] >= cfg.vote_min):
                self._stable = winner
            return self._stable
        if self._stable < 0 or cfg.hysteresis <= 0 or scores[best] >= scores[self._stable] + cfg.hysteresis:
            self._stable = best
        return self._stable


class ResultFilter:
    """Feed it each frame's scores; it says what to publish, or None for nothing this frame."""

    def __init__(self, config: ResultsConfig, labels: tuple[str, ...], groups: GroupScorer | None = None) -> None:
        self.config = config
        self.labels = labels
        self.classes = Tracker(config, len(labels))
        self.groups = groups
        self.group_tracker = Tracker(config, len(groups.names)) if groups is not None else None
        self._published: int | str | None = None
        self._last_publish = -1e18

    def predictions(self, scores: np.ndarray) -> tuple[Prediction, ...]:
        """Stable label first, then the best others; classes under the threshold dropped."""
        smoothed = self.classes.smooth(scores)
        stable = self.classes.stable(smoothed)
        k = self.config.top_k
        ranked = top_k(smoothed, self.labels, k + 1)
        first = Prediction(stable, self.labels[stable], float(smoothed[stable]))
        if first.score < self.config.threshold:
            return ()  # nothing confident enough: no label, rather than a runner-up posing as the stable one
        rest = [p for p in ranked if p.class_index != stable][: k - 1]
        return (first, *(p for p in rest if p.score >= self.config.threshold))

    def update(self, scores: np.ndarray, now: float) -> Result | None:
        """The result to publish for this frame, or None when the policy says skip.
        `now` is a monotonic time in seconds. Smoothing and the answer run on every frame; the
        group list is built only for a frame that is published."""
        preds = self.predictions(scores)
        group_scores = None
        # What `change` compares: the answer with groups; without, the stable class (two classes
        # can share a label text) or None when nothing passes the threshold.
        key: int | str | None
        if self.groups is None or self.group_tracker is None:
            answer = preds[0].label if preds else NONE
            key = preds[0].class_index if preds else None
        else:
            group_scores = self.group_tracker.smooth(self.groups.scores(scores))
            stable = self.group_tracker.stable(group_scores)
            answer = key = self.groups.names[stable] if group_scores[stable] >= self.config.threshold else NONE
        changed = key != self._published or self._last_publish < -1e17
        if not self._due(key, changed, now):
            return None
        return Result(preds, answer, self._ranked(group_scores) if group_scores is not None else (), changed)

    def _ranked(self, group_scores: np.ndarray) -> tuple[GroupScore, ...]:
        assert self.groups is not None
        pairs = zip(self.groups.names, group_scores.tolist(), strict=True)
        return tuple(GroupScore(n, s) for n, s in sorted(pairs, key=lambda p: -p[1]))  # ties: configured order, `other` last

    def _due(self, key: int | str | None, changed: bool, now: float) -> bool:
        """The publish policy; records the publication when it says yes."""
        cfg = self.config
        due = now - self._last_publish
        if cfg.publish == "every":
            publish = True
        elif cfg.publish == "change":
            publish = changed
        else:
            publish = due >= cfg.interval_s
        if not publish and cfg.heartbeat_s > 0 and due >= cfg.heartbeat_s:
            publish = True
        if not publish:
            return False
        self._published = key
        self._last_publish = now
        return True
