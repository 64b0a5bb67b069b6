"""Group accuracy on a labelled folder: N-way accuracy (groups + other) and per-group precision and recall."""

# The prediction for an image is the group (configured ones and `other`) with the largest summed
# probability, as the daemon's answer with no threshold and no smoothing. The truth is the groups
# that contain the image's class, or `other` when none does; with overlapping groups (animal and
# bird) a prediction is right when it is any group that contains the class.

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import PurePath
from typing import Any

import numpy as np

from edge.model.groups import Group, GroupScorer


@dataclass(frozen=True)
class GroupStats:
    name: str
    images: int  # images whose class is in the group
    precision: float  # percent of images answered with this group that belong to it
    recall: float  # percent of the group's images answered with it


@dataclass(frozen=True)
class GroupAccuracy:
    model: str
    images: int
    accuracy: float  # percent of images answered with a group that holds their class (N-way)
    groups: tuple[GroupStats, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def truth_matrix(scorer: GroupScorer, labels: np.ndarray) -> np.ndarray:
    """images x (groups + other) booleans: which answers are right for each image."""
    return np.asarray(scorer.members[:, labels].T)


def group_accuracy(model: str, probs: np.ndarray, labels: np.ndarray, groups: tuple[Group, ...]) -> GroupAccuracy:
    scorer = GroupScorer(groups, probs.shape[1])
    scores = scorer.scores_batch(probs)  # images x (groups + other)
    predicted = np.argmax(scores, axis=1)  # ties: the configured order, `other` last
    truth = truth_matrix(scorer, labels)
    n = len(labels)
    correct = truth[np.arange(n), predicted]
    stats = []
    for i, name in enumerate(scorer.names):
        answered = predicted == i
        members = truth[:, i]
        tp = int(np.sum(answered & members))
        stats.append(GroupStats(name, int(members.sum()), _pct(tp, int(answered.sum())), _pct(tp, int(members.sum()))))
    return GroupAccuracy(model, n, _pct(int(correct.sum()), n), tuple(stats))


def _pct(a: int, b: int) -> float:
    return round(100.0 * a / b, 2) if b else 0.0


def summary(results: list[GroupAccuracy]) -> str:
    """A side-by-side table: N-way accuracy, then precision / recall per group, one column per model."""
    if not results:
        return ""
    names = [g.name for g in results[0].groups]
    models = [PurePath(r.model).name for r in results]
    width = max(12, *(len(m) for m in models))
    lines = [f"groups {' / '.join(names)}: answer = the group with the largest summed probability (no threshold)"]
    lines.append(f"  {'':<20} " + " ".join(f"{m:>{width}}" for m in models))
    lines.append(f"  {f'{len(names)}-way accuracy':<20} " + " ".join(f"{r.accuracy:>{width}.1f}" for r in results))
    for i, name in enumerate(names):
        cells = " ".join(f"{f'{r.groups[i].precision:.1f} / {r.groups[i].recall:.1f}':>{width}}" for r in results)
        lines.append(f"  {f'{name} P/R (n={results[0].groups[i].images})':<20} {cells}")
    return "\n".join(lines)
