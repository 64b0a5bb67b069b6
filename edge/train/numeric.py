"""Float64 numerics the heads share: softmax, class weights, the two solvers, standardisation, k-means."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# Every solver here starts from zero (or from evenly spaced rows), runs a fixed number of
# full-batch steps in a fixed order and sums in float64: no random initialisation, no mini-batch
# order, no threads racing. The same inputs give the same weights, and float64 leaves the float32
# weights written to the model unaffected by a CPU's vector width (docs/design/train.md).

DESCENT_STEPS = 400  # Nesterov steps of the linear heads' fit
SHARPNESS = 4.0  # of the soft maximum over cells the per-position fit uses (logit units); the model takes the hard maximum
SOFT_MAX_STEPS = 300
SOFT_MAX_RATE = 0.02
KMEANS_STEPS = 20

# (standardised inputs, one-hot labels, row weights, L2 strength) -> (D x C weights, C biases)
Solver = Callable[[np.ndarray, np.ndarray, np.ndarray, float], tuple[np.ndarray, np.ndarray]]


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax, shifted by each row's maximum so exp never overflows."""
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return out


def class_weights(labels: np.ndarray, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(N x C one-hot labels, N x 1 row weights): every class weighs the same, and the weights sum to 1."""
    onehot = np.eye(classes)[labels]
    counts = np.bincount(labels, minlength=classes).astype(np.float64)
    weight = (len(labels) / (classes * counts))[labels][:, None] / len(labels)
    return onehot, weight


def per_channel(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each channel's mean and spread (plus 1e-6) over all rows and cells of `x` (N x D or N x cells x D)."""
    cells = x.reshape(-1, x.shape[-1])
    mean: np.ndarray = cells.mean(axis=0)
    return mean, cells.std(axis=0) + 1e-6


def fit_standardised(
    solve: Solver, x: np.ndarray, mean: np.ndarray, scale: np.ndarray, onehot: np.ndarray, weight: np.ndarray, l2: float
) -> tuple[np.ndarray, np.ndarray]:
    """(D x C kernel, C bias) on the raw inputs `x`: `solve` runs on (x - mean) / scale, and the
    standardisation is folded back into the weights."""
    xs = x - mean
    xs /= scale  # in place: at 2x, one copy of the maps fewer (0.3 GB for 500 images); the same values
    w, b = solve(xs, onehot, weight, l2)
    kernel = w / scale[:, None]
    bias: np.ndarray = b - mean @ kernel
    return kernel, bias


def accelerated_descent(x: np.ndarray, onehot: np.ndarray, weight: np.ndarray, l2: float) -> tuple[np.ndarray, np.ndarray]:
    """Class-balanced, L2-regularised softmax regression on N x D `x` by Nesterov's method, with the
    step from a bound on the loss's curvature (power iteration from a fixed start): deterministic,
    and for a convex loss no tuning beyond the step count. The bias is not shrunk."""
    d, c = x.shape[1], onehot.shape[1]
    xb = np.hstack([x, np.ones((len(x), 1))])
    v = np.ones(d + 1) / np.sqrt(d + 1)
    for _ in range(30):
        v = xb.T @ (weight[:, 0] * (xb @ v))
        v /= np.linalg.norm(v)
    lipschitz = float(v @ (xb.T @ (weight[:, 0] * (xb @ v)))) * 0.5 + l2
    step = 1.0 / lipschitz
    theta = np.zeros((d + 1, c))
    ahead = theta.copy()
    reg = np.ones((d + 1, 1))
    reg[-1] = 0.0
    for k in range(DESCENT_STEPS):
        grad = xb.T @ (weight * (softmax(xb @ ahead) - onehot)) + l2 * reg * ahead
        nxt = ahead - step * grad
        ahead = nxt + (k / (k + 3.0)) * (nxt - theta)
        theta = nxt
    return theta[:-1], theta[-1]


def soft_max_descent(x: np.ndarray, onehot: np.ndarray, weight: np.ndarray, l2: float) -> tuple[np.ndarray, np.ndarray]:
    """The same regression for one linear layer applied at every cell of N x P x D `x` with each
    class's best cell as its logit, by full-batch Adam on a soft maximum over cells,
    (1/r) log mean exp(r z): smooth, so every cell gets a gradient from the start (the hard
    maximum's argmax at all-zero weights is an arbitrary cell)."""
    n, p, d = x.shape
    flat = x.reshape(n * p, d)
    params = [np.zeros((d, onehot.shape[1])), np.zeros(onehot.shape[1])]
    first = [np.zeros_like(q) for q in params]
    second = [np.zeros_like(q) for q in params]
    for k in range(1, SOFT_MAX_STEPS + 1):
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
            q -= SOFT_MAX_RATE * (m / (1 - 0.9**k)) / (np.sqrt(v / (1 - 0.999**k)) + 1e-8)
    return params[0], params[1]


def kmeans(x: np.ndarray, count: int) -> np.ndarray:
    """K x ... centres of the rows of `x` (N x ...), K = min(count, N), started at evenly spaced rows
    and run a fixed number of steps: the same rows give the same centres."""
    flat = x.reshape(len(x), -1)
    k = min(count, len(flat))
    centres = flat[np.linspace(0, len(flat) - 1, k).astype(np.int64)].copy()
    for _ in range(KMEANS_STEPS):
        near = nearest(flat, centres)
        for j in range(k):
            if np.any(near == j):
                centres[j] = flat[near == j].mean(axis=0)
    out: np.ndarray = centres.reshape(k, *x.shape[1:])
    return out


def nearest(flat: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """N: the index of each row's nearest centre (both flattened), by squared distance."""
    # |a - c|^2 = |a|^2 - 2 a.c + |c|^2; |a|^2 is the same for every centre.
    scores = (flat @ centres.T) * -2.0 + np.sum(centres * centres, axis=1)
    out: np.ndarray = np.argmin(scores, axis=1)
    return out
