"""The change head: how far a frame is, pixel by pixel, from the nearest frame of the empty scene."""

from __future__ import annotations

import numpy as np

from edge.train import scene

# The scene-2x head's last misses were 10-16 px subjects that blend in (a grey-brown dragonfly on
# bark): too small and too like their surroundings for the pretrained filters, yet their pixels still
# differ from the same place in the empty scene, which a fixed camera shows again and again
# (measured in docs/train.md). So each frame is standardised (zero mean, unit spread over all its
# pixels: daylight gain and auto-exposure contrast drop out), compared with K prototypes of the
# empty class's standardised frames (k-means, as scene.py), and scored by
#     min over k of (max over 3x3 boxes of the box mean of sum over RGB of outside(z, Q_k)),
# where outside(z, Q) = relu(z - upper(Q)) + relu(lower(Q) - z), the bounds being Q's largest and
# smallest value near each pixel. The right scene differs only where something new is; a wrong one
# differs everywhere. A linear layer on that one number gives the two classes' logits. One number
# answers one question, "is anything there that the empty frames do not show?": two classes, one of
# them the empty scene. It cannot tell a bird from a cat. In the model the backbone falls out
# (edge/train/build.py): the standardisation, outside() per prototype, summed over RGB, the box
# mean, the max over places and the min over prototypes: 1.7-2.3x the stock model's instructions.

BOX = 3  # px of the 128: averages sensor noise, keeps a 6 px subject
# A pixel counts as changed only by how far it lies outside what the prototype shows within this
# many px of it: a camera that moved by less than the view check's 1 px (edge/model/viewref.py),
# which it cannot report, must not make every pixel differ. Measured (docs/train.md): exact pixels
# read 67 of 100 empty bird frames as 'present' after a 1 px nudge; with the tolerance, none.
TOLERANCE = 1
EPS = 1e-6  # added to the variance (in the model's [-1, 1] pixel units) before the reciprocal root
BATCH = 64  # frames standardised at a time: 25 MB in float64


def standardise(frames: np.ndarray) -> np.ndarray:
    """N x H x W x 3 float32: each uint8 frame in the model's [-1, 1] units, minus its mean, over
    its spread. The statistics are float64 sums; the rest is element-wise: the same on every CPU."""
    x = frames.astype(np.float64) / 127.5 - 1.0
    x -= x.mean(axis=(1, 2, 3), keepdims=True)
    x /= np.sqrt((x * x).mean(axis=(1, 2, 3), keepdims=True) + EPS)
    out: np.ndarray = x.astype(np.float32)
    return out


def prototypes(frames: np.ndarray) -> np.ndarray:
    """K x H x W x 3 float32 standardised prototypes of the empty class's unaugmented frames."""
    out: np.ndarray = scene.prototypes(standardise(frames).astype(np.float64)).astype(np.float32)
    return out


def bounds(protos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(upper, lower): each prototype's largest and smallest value within TOLERANCE px of every
    pixel, per channel (the edge repeated beyond the border)."""
    r, (h, w) = TOLERANCE, protos.shape[1:3]
    padded = np.pad(protos, ((0, 0), (r, r), (r, r), (0, 0)), mode="edge")
    windows = [padded[:, i : i + h, j : j + w] for i in range(2 * r + 1) for j in range(2 * r + 1)]
    return np.max(windows, axis=0), np.min(windows, axis=0)


def distances(frames: np.ndarray, protos: np.ndarray) -> np.ndarray:
    """N x K: each uint8 frame's largest box mean of sum over RGB of how far z lies outside each
    prototype's local range [lower, upper]."""
    upper, lower = bounds(protos)
    out = np.empty((len(frames), len(protos)))
    for start in range(0, len(frames), BATCH):
        z = standardise(frames[start : start + BATCH])
        for k in range(len(protos)):
            outside = np.maximum(z - upper[k], 0.0) + np.maximum(lower[k] - z, 0.0)
            out[start : start + BATCH, k] = _box_max(outside.sum(axis=-1))
    return out


def score(frames: np.ndarray, protos: np.ndarray) -> np.ndarray:
    """N: the distance to the nearest prototype, what the model's linear layer reads."""
    out: np.ndarray = distances(frames, protos).min(axis=1)
    return out


def _box_max(d: np.ndarray) -> np.ndarray:
    """N: the largest BOX x BOX mean of each N x H x W map (valid positions; a fixed summing order)."""
    h, w = d.shape[1] - BOX + 1, d.shape[2] - BOX + 1
    total = np.zeros((len(d), h, w), np.float32)
    for i in range(BOX):
        for j in range(BOX):
            total += d[:, i : i + h, j : j + w]
    out: np.ndarray = total.max(axis=(1, 2)).astype(np.float64) / (BOX * BOX)
    return out
