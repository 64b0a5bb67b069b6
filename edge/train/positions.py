"""A per-position head: one linear layer at every cell of an 8x8 feature map (16x16 with the input enlarged 2x), then the max over cells."""

from __future__ import annotations

import numpy as np

from edge.train.numeric import softmax

# A subject 5-10 % of the frame's width is 6-13 px of the model's 128: a fraction of one cell of the
# final 4x4 map, so its trace in the 256 average-pooled features is diluted 16-fold by the scene
# around it. Scoring every cell of layer 22's 8x8x128 map (16 px cells, before the last stride) with
# the same linear layer and taking each class's best cell ("some place says present") keeps it
# undiluted; measured in docs/train.md. In the model this is CONV_2D 1x1 + MAX_POOL_2D 8x8, both
# XNNPACK ops in int8. The positions-2x head (edge/train/head.py) does the same on the frame enlarged
# 2x inside the model: a 16x16 map of 8 px cells, for subjects smaller than one 16 px cell.

LAYER = "layer22_relu6"  # the last 8x8 map; layers 23-26 and the ImageNet head are dropped
SHARPNESS = 4.0  # of the soft maximum the fit uses (logit units); the model takes the hard maximum
STEPS = 300
RATE = 0.02


def cell_scores(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """N x positions x C: the linear layer at every position of `x` (N x positions x D)."""
    n, p, d = x.shape
    z: np.ndarray = (x.reshape(n * p, d) @ kernel).reshape(n, p, -1) + bias
    return z


def pooled(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """N x C logits: each class's best position; `x` is N x positions x D."""
    out: np.ndarray = cell_scores(x, kernel, bias).max(axis=1)
    return out


def fit(x: np.ndarray, onehot: np.ndarray, weight: np.ndarray, l2: float) -> tuple[np.ndarray, np.ndarray]:
    """(D x C kernel, C bias) on standardised positions `x` (N x P x D), by full-batch Adam on a soft
    maximum over positions, (1/r) log mean exp(r z): smooth, so every position gets a gradient from
    the start (the hard maximum's argmax at all-zero weights is an arbitrary cell). Zero start, a
    fixed step count and order: the same inputs give the same weights."""
    n, p, d = x.shape
    flat = x.reshape(n * p, d)
    params = [np.zeros((d, onehot.shape[1])), np.zeros(onehot.shape[1])]
    first = [np.zeros_like(q) for q in params]
    second = [np.zeros_like(q) for q in params]
    for k in range(1, STEPS + 1):
        z = (flat @ params[0]).reshape(n, p, -1) + params[1]
        top = z.max(axis=1, keepdims=True)
        e = np.exp(SHARPNESS * (z - top))
        soft = top[:, 0] + np.log(e.mean(axis=1)) / SHARPNESS
        g = weight * (softmax(soft) - onehot)  # N x C, d loss / d pooled logit
        gz = ((e / e.sum(axis=1, keepdims=True)) * g[:, None, :]).reshape(n * p, -1)
        grads = [flat.T @ gz + l2 * params[0], gz.sum(axis=0)]
        for q, grad, m, v in zip(params, grads, first, second, strict=True):
            m *= 0.9
            m += 0.1 * grad
            v *= 0.999
            v += 0.001 * grad * grad
            q -= RATE * (m / (1 - 0.9**k)) / (np.sqrt(v / (1 - 0.999**k)) + 1e-8)
    return params[0], params[1]
