"""Whether the training frames show one fixed camera view, and that view for the daemon's moved-camera check."""

from __future__ import annotations

import numpy as np

from edge.model import viewref
from edge.train import scenes

# Frames `mnv1-edge capture` took of one camera match each other at about 0.98 (the bench's
# present/absent tasks: held-out frames against the training frames' references, median); photos
# of different scenes (the orientation and ImageNet-group tasks) at about 0.10. Half-way between:
FIXED_VIEW_MATCH = 0.5
PROBES = 50  # held-out frames matched, evenly spaced


def references(train_frames: np.ndarray, held_out: np.ndarray) -> str | None:
    """The manifest's references (k-means centres of the unaugmented training frames in 64x64 grey,
    at most scenes.PROTOTYPES), or None when the held-out frames do not match them: not one view."""
    g = np.stack([viewref.grey(f) for f in train_frames]).astype(np.float64)
    refs = scenes.prototypes(g.reshape(len(g), -1, 1)).reshape(-1, *g.shape[1:])
    estimator = viewref.ShiftEstimator(refs)
    probes = held_out[np.linspace(0, len(held_out) - 1, min(PROBES, len(held_out))).astype(np.int64)]
    matches = [estimator.estimate(f)[1] for f in probes]
    return viewref.encode(refs) if matches and float(np.median(matches)) >= FIXED_VIEW_MATCH else None
