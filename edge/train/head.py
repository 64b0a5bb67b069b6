"""A linear softmax head on what the pretrained network computes, fitted in float64 in a fixed order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edge.train import change, positions, scene
from edge.train.numeric import softmax

# The backbone stays as the converter rebuilds it (frozen): its features and its 1001 ImageNet
# probabilities are computed once, in float64, and a multinomial logistic regression is fitted on
# them by a fixed number of full-batch accelerated gradient steps. No random initialisation, no
# mini-batch order, no threads racing: the same inputs give the same weights, and float64 leaves the
# float32 weights written to the model unaffected by a CPU's vector width (see docs/train.md).

# The 256 average-pooled features, the 1001 class probabilities, layer 22's 8x8x128 map scored
# position by position (edge/train/positions.py), or the same on the frame enlarged 2x inside the
# model (16x16 cells of 8 px: subjects of 5-10 % of the width; about 4x the compute per frame), or
# layer 16's 2x map scored against the fixed camera's empty scene (edge/train/scene.py; needs an
# empty class; it ends the network sooner, so about 3.5x), or, for two classes one of which is the
# empty scene, the frame's pixels against the empty scene's (edge/train/change.py; no backbone).
INPUTS = ("features", "probs", "positions", "positions-2x", "scene-2x", "change")
POSITIONS = ("positions", "positions-2x", "scene-2x")
UPSCALE = {"positions-2x": 2, "scene-2x": 2}  # input enlargement inside the model; 1 for the others
# Instructions per frame against the stock model's, A53-A76 (docs/train.md).
ARM_COST = {"positions-2x": "4.1-4.7x", "scene-2x": "3.3-4.2x", "change": "2.9-4.8x"}
# On a cross-validation tie: cheaper, int8-friendlier first; the scene heads last (they also depend
# on the empty scene staying as it was trained), the change head, which sees any change, after all.
PREFERENCE = {"features": 3, "positions": 2, "probs": 1, "positions-2x": 0, "scene-2x": -1, "change": -2}
# A head that costs 3-5x the compute on every frame of the device must earn it: it is chosen only
# when its cross-validated accuracy beats the best other input's by more than this many points.
COST_MARGIN = {"positions-2x": 1.0, "scene-2x": 1.0, "change": 1.0}


def upscale_of(kind: str) -> int:
    """How much the head input `kind` enlarges the 128x128 frame inside the model."""
    return UPSCALE.get(kind, 1)


@dataclass(frozen=True)
class Head:
    kind: str  # one of INPUTS
    kernel: np.ndarray  # D x N float32, on the raw (unstandardised) inputs
    bias: np.ndarray  # N float32
    offsets: np.ndarray | None = None  # scene-2x: K x cells x N float32, w.P_k per scene prototype
    prototypes: np.ndarray | None = None  # change: K x 128 x 128 x 3 float32 standardised empty frames

    @property
    def upscale(self) -> int:
        return upscale_of(self.kind)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """N x classes; `x` is the head's input (uint8 frames for the change head)."""
        kernel, bias = self.kernel.astype(np.float64), self.bias.astype(np.float64)
        if self.prototypes is not None:
            return change.score(x, self.prototypes)[:, None] @ kernel + bias
        x = np.asarray(x, np.float64)
        if self.offsets is not None:
            return scene.pooled(x, kernel, bias, self.offsets.astype(np.float64))
        return positions.pooled(x, kernel, bias) if self.kind in POSITIONS else x @ kernel + bias

    def probs(self, x: np.ndarray) -> np.ndarray:
        return softmax(self.logits(x))


def backbone_outputs(layers: list[Any], frames: np.ndarray, kinds: tuple[str, ...] = INPUTS, batch: int = 50) -> dict[str, np.ndarray]:
    """The head inputs `kinds` of the float network, computed in float64: N x 256 pooled features,
    N x 1001 probabilities, N x 64 x 128 positions, N x 256 x 128 positions-2x and scene-2x."""
    out: dict[str, np.ndarray] = {}
    for upscale in sorted({upscale_of(kind) for kind in kinds}):
        # Activations grow with the square of the enlargement: smaller batches keep TensorFlow's peak memory where 1x has it.
        out |= _outputs(layers, frames, tuple(k for k in kinds if upscale_of(k) == upscale), upscale, max(1, batch // upscale**2))
    return {kind: out[kind] for kind in kinds}


def _outputs(layers: list[Any], frames: np.ndarray, kinds: tuple[str, ...], upscale: int, batch: int) -> dict[str, np.ndarray]:
    import keras

    from edge.convert import rebuild
    from edge.convert.quantize import quiet

    with quiet():
        model = rebuild.build_keras(layers, "float64", upscale)
    layer = {"features": "avgpool", "probs": "softmax", "scene-2x": scene.LAYER}
    taps = {kind: layer.get(kind, positions.LAYER) for kind in kinds}
    probe = keras.Model(model.inputs, [model.get_layer(name).output for name in taps.values()])
    out: dict[str, list[np.ndarray]] = {kind: [] for kind in taps}
    for start in range(0, len(frames), batch):
        values = probe([frames[start : start + batch]], training=False)
        values = values if isinstance(values, list | tuple) else [values]  # one output comes back bare
        for kind, value in zip(taps, values, strict=True):
            v = np.asarray(value, np.float64)
            out[kind].append(v.reshape(len(v), -1, v.shape[-1]) if kind in POSITIONS else v.reshape(len(v), -1))
    return {kind: np.concatenate(parts) for kind, parts in out.items()}


def fit(kind: str, x: np.ndarray, labels: np.ndarray, classes: int, l2: float = 1e-3, steps: int = 400, empty: np.ndarray | None = None) -> Head:
    """Class-balanced, L2-regularised softmax regression. Features and positions are standardised
    for the fit (then folded back into the weights; positions per channel over all cells);
    probabilities are not (they already share one scale, and dividing by tiny spreads would make the
    head lean on probabilities int8 rounds to zero). scene-2x and change need `empty`: which rows of
    `x` are unaugmented frames of the empty class (their prototypes); change's `x` is the uint8 frames."""
    onehot = np.eye(classes)[labels]
    counts = np.bincount(labels, minlength=classes).astype(np.float64)
    weight = (len(labels) / (classes * counts))[labels][:, None] / len(labels)  # rows sum to 1 over the data
    if kind in ("scene-2x", "change") and (empty is None or not np.any(empty)):
        raise ValueError(f"{kind} needs frames of an empty-scene class")
    protos = None
    if kind == "change":
        assert empty is not None
        protos = change.prototypes(x[empty])
        x = change.score(x, protos)[:, None]  # the one number the linear layer reads, as the model computes it
    x = np.asarray(x, np.float64)
    if kind == "scene-2x":
        w, b, offsets = scene.fit(x, onehot, weight, l2, x[empty])
        return Head(kind, w.astype(np.float32), b.astype(np.float32), offsets.astype(np.float32))
    if kind != "probs":
        cells = x.reshape(-1, x.shape[-1])
        mean, scale = cells.mean(axis=0), cells.std(axis=0) + 1e-6
    else:
        mean, scale = np.zeros(x.shape[1]), np.full(x.shape[1], float(np.sqrt(np.mean(x * x))) + 1e-12)
    xs = x - mean
    xs /= scale  # in place: at 2x, one copy of the maps fewer (0.3 GB for 500 images); the same values
    if kind in POSITIONS:
        w, b = positions.fit(xs, onehot, weight, l2)
    else:
        w, b = _accelerated_descent(xs, onehot, weight, l2, steps)
    kernel = w / scale[:, None]
    bias = b - mean @ kernel
    return Head(kind, kernel.astype(np.float32), bias.astype(np.float32), prototypes=protos)


def _accelerated_descent(x: np.ndarray, onehot: np.ndarray, weight: np.ndarray, l2: float, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Nesterov's method with the step from a bound on the loss's curvature (power iteration from a
    fixed start): deterministic, and for a convex loss no tuning beyond the step count."""
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
    reg[-1] = 0.0  # the bias is not shrunk
    for k in range(steps):
        grad = xb.T @ (weight * (softmax(xb @ ahead) - onehot)) + l2 * reg * ahead
        nxt = ahead - step * grad
        ahead = nxt + (k / (k + 3.0)) * (nxt - theta)
        theta = nxt
    return theta[:-1], theta[-1]


L2_GRID = (1e-3, 1e-2, 1e-1)  # regularisation strengths tried by cross-validation
# The 2x head's fits are 4x the work of the others' (16x16 cells): one strength, the one that did
# best on the 2x head in docs/train.md's measurements, keeps `train` of 500 images within minutes.
L2_GRIDS = {"positions-2x": (1e-2,), "scene-2x": (1e-2,), "change": (1e-3,)}  # change: one input, only the slope shrinks


def choose(
    inputs: dict[str, np.ndarray],
    labels: np.ndarray,
    origin: np.ndarray,
    classes: int,
    kinds: tuple[str, ...] = INPUTS,
    folds: int = 4,
    empty: np.ndarray | None = None,
) -> tuple[str, float, dict[str, float]]:
    """(input, L2 strength, cross-validated accuracy of every pair) on the training images only.
    Folds go by `origin` (the training image a view was made from), so an image's augmented views
    never sit on both sides. Ties go by PREFERENCE and to the stronger regularisation (smoother
    weights survive int8 rounding better). A costly input (COST_MARGIN) must win by its margin.
    `empty` marks the unaugmented views of the empty class (the scene heads' prototypes)."""
    scores: dict[str, float] = {}
    best: tuple[float, int, float, str] | None = None
    for kind in kinds:
        x = inputs[kind]
        for l2 in L2_GRIDS.get(kind, L2_GRID):
            right = 0
            for fold in range(folds):
                test = origin % folds == fold
                if len(np.unique(labels[~test])) < classes:
                    continue
                head = fit(kind, x[~test], labels[~test], classes, l2, empty=None if empty is None else empty[~test])
                right += int(np.sum(np.argmax(head.logits(x[test]), axis=1) == labels[test]))
            score = round(100.0 * right / len(labels), 2)
            scores[f"{kind} l2={l2:g}"] = score
            key = (score - COST_MARGIN.get(kind, 0.0), PREFERENCE[kind], l2, kind)
            if best is None or key > best:
                best = key
    assert best is not None
    return best[3], best[2], scores
