"""Choosing a head: every candidate's input from the frozen backbone, computed once, and `auto`'s cross-validated choice."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edge.train import heads
from edge.train.heads.base import Head, Views

# The backbone stays as the converter rebuilds it (frozen): what a head reads of it is computed
# once, in float64, for every candidate head; each head is a linear softmax layer fitted on that
# (edge/train/heads/, one module per head; edge/train/numeric.py, the solvers they share).

INPUTS = heads.NAMES  # the heads `--head` names (edge/train/heads/__init__.py)


def backbone_outputs(layers: list[Any], frames: np.ndarray, names: Sequence[str], batch: int = 50) -> dict[str, np.ndarray]:
    """What the heads `names` read of the float network at their taps, computed in float64: N x 256
    pooled features, N x 1001 probabilities, N x cells x 128 maps for the per-position heads."""
    out: dict[str, np.ndarray] = {}
    wanted = [heads.get(name) for name in names]
    for upscale in sorted({h.upscale for h in wanted}):
        # Activations grow with the square of the enlargement: smaller batches keep TensorFlow's peak memory where 1x has it.
        out |= _outputs(layers, frames, [h for h in wanted if h.upscale == upscale], upscale, max(1, batch // upscale**2))
    return {name: out[name] for name in names}


def _outputs(layers: list[Any], frames: np.ndarray, wanted: list[Head], upscale: int, batch: int) -> dict[str, np.ndarray]:
    import keras

    from edge.convert import rebuild
    from edge.convert.quantize import quiet

    with quiet():
        model = rebuild.build_keras(layers, "float64", upscale)
    probe = keras.Model(model.inputs, [model.get_layer(h.tap).output for h in wanted])
    out: dict[str, list[np.ndarray]] = {h.name: [] for h in wanted}
    for start in range(0, len(frames), batch):
        values = probe([frames[start : start + batch]], training=False)
        values = values if isinstance(values, list | tuple) else [values]  # one output comes back bare
        for h, value in zip(wanted, values, strict=True):
            v = np.asarray(value, np.float64)
            out[h.name].append(v.reshape(len(v), -1, v.shape[-1]) if h.per_cell else v.reshape(len(v), -1))
    return {name: np.concatenate(parts) for name, parts in out.items()}


def training_inputs(layers: list[Any], candidates: Sequence[Head], views: Views) -> dict[str, np.ndarray]:
    """Each candidate's input on the training views, by name: the backbone's output at its tap on
    the augmented views (one pass per enlargement for all of them), or what it makes of the frames."""
    maps = backbone_outputs(layers, views.augmented, [h.name for h in candidates if h.tap is not None])
    return {h.name: h.training_input(views, maps) for h in candidates}


def choose(
    inputs: dict[str, np.ndarray],
    labels: np.ndarray,
    origin: np.ndarray,
    classes: int,
    candidates: Sequence[Head],
    folds: int = 4,
    empty: np.ndarray | None = None,
) -> tuple[Head, float, dict[str, float]]:
    """(head, L2 strength, cross-validated accuracy of every pair) on the training images only.
    Folds go by `origin` (the training image a view was made from), so an image's augmented views
    never sit on both sides. Ties go by each head's preference and to the stronger regularisation
    (smoother weights survive int8 rounding better). A costly head must win by its cost margin.
    `empty` marks the unaugmented views of the empty class (the empty-scene heads' prototypes)."""
    scores: dict[str, float] = {}
    best: tuple[float, int, float, str] | None = None
    for head in candidates:
        x = inputs[head.name]
        for l2 in head.l2_grid:
            right = 0
            for fold in range(folds):
                test = origin % folds == fold
                if len(np.unique(labels[~test])) < classes:
                    continue
                fitted = head.fit(x[~test], labels[~test], classes, l2, None if empty is None else empty[~test])
                right += int(np.sum(np.argmax(fitted.logits(x[test]), axis=1) == labels[test]))
            score = round(100.0 * right / len(labels), 2)
            scores[f"{head.name} l2={l2:g}"] = score
            key = (score - head.cost_margin, head.preference, l2, head.name)
            if best is None or key > best:
                best = key
    assert best is not None
    return next(h for h in candidates if h.name == best[3]), best[2], scores
