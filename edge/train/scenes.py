"""A fixed camera's scenes: the class that shows the scene alone, and the few prototypes its frames fall into."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge.train.numeric import kmeans

# A fixed camera sees the same few scenes (day, dusk, lamps on) again and again. The heads that
# compare a frame with the empty scene (scene-2x, change) keep prototypes of the empty class's
# frames; the manifest's view references (edge/train/view.py) are prototypes of all training frames.

EMPTY_NAMES = ("absent", "background", "empty", "none", "nothing")  # the class that shows the scene alone
EMPTY_FOLDER = "named " + "/".join(EMPTY_NAMES) + " (frames of the scene alone)"  # what `--head X needs ...` asks for
PROTOTYPES = 8  # scenes kept; more than a camera's usual light states, so k-means splits by brightness too


def empty_class(classes: Sequence[str]) -> int | None:
    """The index of the one class named like an empty scene, or None (also when two are)."""
    found = [i for i, name in enumerate(classes) if name.lower() in EMPTY_NAMES]
    return found[0] if len(found) == 1 else None


def empty_class_of(classes: Sequence[str]) -> int:
    """empty_class, for a head that was fitted on the empty class's frames (so there is one)."""
    empty = empty_class(classes)
    assert empty is not None, classes
    return empty


def prototypes(x: np.ndarray) -> np.ndarray:
    """K x ... k-means centres of N frames or maps `x` (K = at most PROTOTYPES): the same `x` gives the same prototypes."""
    return kmeans(x, PROTOTYPES)


def empty_rows(name: str, empty: np.ndarray | None) -> np.ndarray:
    """`empty` (which training rows are unaugmented frames of the empty class), or the error of a head that needs them."""
    if empty is None or not np.any(empty):
        raise ValueError(f"{name} needs frames of an empty-scene class")
    return empty
