"""The scene head: per-position scores on what differs from the fixed camera's empty scene."""

from __future__ import annotations

import numpy as np

from edge.train import positions

# A fixed camera sees the same few scenes (day, dusk, lamps on) again and again. A small subject
# that blends in (a brown dragonfly on bark) barely moves the features at its cell towards the
# subject's look, but it moves them away from what that cell shows when the scene is empty. So the
# empty class's own training frames give K prototype maps (k-means, fixed start), and the
# per-position linear head is fitted on each frame's map minus its nearest prototype. On the device
# the nearest prototype is not looked up: the head's score at a cell is w.f + b - w.P_k, so each
# class keeps K maps of offsets w.P_k and takes min over k of (max over cells of w.f + b - w.P_k).
# For the right scene the residual is small except at the subject; a wrong scene's large
# differences raise its max, so the min picks the right one (the same held-out answers as the
# look-up, measured in docs/train.md). The map is layer 16's (16x16x128 on the frame enlarged 2x):
# measured better than layer 22's, and the network ends six layers sooner. In the model: the 1x1
# convolution repeated K times, a SUB of the constant offsets, the 16x16 max pool, then the
# minimum over K.

LAYER = "layer16_relu6"  # 16x16x128 at 2x
EMPTY_NAMES = ("absent", "background", "empty", "none", "nothing")  # the class that shows the scene alone
PROTOTYPES = 8  # scene maps; more than a camera's usual light states, so k-means splits by brightness too
KMEANS_STEPS = 20


def empty_class(classes: tuple[str, ...] | list[str]) -> int | None:
    """The index of the one class named like an empty scene, or None (also when two are)."""
    found = [i for i, name in enumerate(classes) if name.lower() in EMPTY_NAMES]
    return found[0] if len(found) == 1 else None


def prototypes(maps: np.ndarray, count: int = PROTOTYPES) -> np.ndarray:
    """K x P x D k-means centres of the empty frames' maps (N x P x D), started at evenly spaced
    frames and run a fixed number of steps: the same maps give the same prototypes."""
    flat = maps.reshape(len(maps), -1)
    k = min(count, len(flat))
    centres = flat[np.linspace(0, len(flat) - 1, k).astype(np.int64)].copy()
    for _ in range(KMEANS_STEPS):
        nearest = _nearest(flat, centres)
        for j in range(k):
            if np.any(nearest == j):
                centres[j] = flat[nearest == j].mean(axis=0)
    out: np.ndarray = centres.reshape(k, *maps.shape[1:])
    return out


def _nearest(flat: np.ndarray, centres: np.ndarray) -> np.ndarray:
    # |a - c|^2 = |a|^2 - 2 a.c + |c|^2; |a|^2 is the same for every centre.
    scores = (flat @ centres.T) * -2.0 + np.sum(centres * centres, axis=1)
    nearest: np.ndarray = np.argmin(scores, axis=1)
    return nearest


def residual(maps: np.ndarray, protos: np.ndarray) -> np.ndarray:
    """Each map minus its nearest prototype (by the whole map)."""
    out: np.ndarray = protos[_nearest(maps.reshape(len(maps), -1), protos.reshape(len(protos), -1))]
    np.subtract(maps, out, out=out)  # into the gathered prototypes: one copy of the maps, not two
    return out


def fit(x: np.ndarray, onehot: np.ndarray, weight: np.ndarray, l2: float, empty_maps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(D x C kernel, C bias, K x P x C offsets) on raw maps `x` (N x P x D); `empty_maps` are the
    empty class's unaugmented training maps. The residuals are scaled per channel (not centred:
    an empty frame's residual is already about zero) for the fit, then the scale is folded back."""
    protos = prototypes(empty_maps)
    scale = x.reshape(-1, x.shape[-1]).std(axis=0) + 1e-6
    r = residual(x, protos)
    r /= scale  # in place: at 2x, 500 training images make each copy of the maps 0.4 GB
    w, b = positions.fit(r, onehot, weight, l2)
    kernel = w / scale[:, None]
    offsets = np.einsum("kpd,dc->kpc", protos, kernel)
    return kernel, b, offsets


def pooled(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """N x C logits: min over scenes of each class's best cell after that scene's offsets."""
    z = positions.cell_scores(x, kernel, bias)
    out: np.ndarray = np.stack([(z - o).max(axis=1) for o in offsets]).min(axis=0)
    return out
