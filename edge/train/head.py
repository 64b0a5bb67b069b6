"""Choosing a head: every candidate's input from the frozen backbone, computed once, and `auto`'s cross-validated choice."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Probe:
    """The training images as a light change they never showed would make them (edge/train/conditions.py:
    dimmed), each head's input on them, their classes and folds: what cross-validation asks of each
    head besides its accuracy when the training frames were all taken in one light."""

    inputs: dict[str, np.ndarray]  # by head name, one row per training image
    labels: np.ndarray
    fold: np.ndarray


@dataclass(frozen=True)
class Choice:
    head: Head
    l2: float
    cv: dict[str, float]  # cross-validated accuracy of every (head, L2) pair, keyed "name l2=..."
    best: dict[str, str]  # each head's best pair's key
    probe: dict[str, float]  # accuracy on the probe's images, keyed as `cv` (empty without a probe)
    excluded: tuple[str, ...]  # heads that would have been chosen but for the probe

    def probe_of(self, name: str) -> float:
        """The head's probe accuracy with its best L2 (the one it was judged by)."""
        return self.probe[self.best[name]]


PROBE_MIN = 90.0  # percent of the probe's images a head must keep in their class to be chosen on narrow light


def choose(
    inputs: dict[str, np.ndarray],
    labels: np.ndarray,
    fold: np.ndarray,
    classes: int,
    candidates: Sequence[Head],
    empty: np.ndarray | None = None,
    probe: Probe | None = None,
    margins: bool = True,
) -> Choice:
    """The head and L2 strength by cross-validation on the training views only. `fold` is each
    view's fold (dataset.Split.folds: stretches of time, and an image's augmented views sit in its
    image's fold). Ties go by each head's preference and to the stronger regularisation (smoother
    weights survive int8 rounding better); a costly head must win by its cost margin. `empty` marks
    the unaugmented views of the empty class (the empty-scene heads' prototypes). With a `probe`,
    each fold's fit also answers the probe images of that fold, and a head that keeps fewer than
    PROBE_MIN % of them in their class is chosen only when every head does as badly. Without
    `margins`, a costly head wins a tie on its preference alone (the folds cannot tell heads apart:
    conditions.few_visits)."""
    scores: dict[str, float] = {}
    probed: dict[str, float] = {}
    best: dict[str, tuple[float, int, float]] = {}  # head -> (score - margin, preference, l2) of its best L2
    for head in candidates:
        x = inputs[head.name]
        for l2 in head.l2_grid:
            right = probe_right = 0
            for f in np.unique(fold):
                test = fold == f
                if len(np.unique(labels[~test])) < classes:
                    continue
                fitted = head.fit(x[~test], labels[~test], classes, l2, None if empty is None else empty[~test])
                right += int(np.sum(np.argmax(fitted.logits(x[test]), axis=1) == labels[test]))
                if probe is not None:
                    mine = probe.fold == f
                    probe_right += int(np.sum(np.argmax(fitted.logits(probe.inputs[head.name][mine]), axis=1) == probe.labels[mine]))
            key = f"{head.name} l2={l2:g}"
            scores[key] = round(100.0 * right / len(labels), 2)
            if probe is not None:
                probed[key] = round(100.0 * probe_right / len(probe.labels), 2)
            ranked = (scores[key] - (head.cost_margin if margins else 0.0), head.preference, l2)
            if head.name not in best or ranked > best[head.name]:
                best[head.name] = ranked
    keys = {name: f"{name} l2={ranked[2]:g}" for name, ranked in best.items()}
    holds = {h.name: not probed or probed[keys[h.name]] >= PROBE_MIN for h in candidates}
    eligible = [h for h in candidates if holds[h.name]] or list(candidates)
    chosen = max(eligible, key=lambda h: (*best[h.name], h.name))
    excluded = tuple(h.name for h in candidates if not holds[h.name] and best[h.name] > best[chosen.name])
    return Choice(chosen, best[chosen.name][2], scores, keys, probed, excluded)
