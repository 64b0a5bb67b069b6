"""The scene head: per-position scores, on the frame enlarged 2x, of what differs from the fixed camera's empty scene."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge.train import scenes
from edge.train.heads.base import Fitted, Head, backbone
from edge.train.heads.positions import cell_scores
from edge.train.numeric import class_weights, nearest, soft_max_descent

# A fixed camera sees the same few scenes (day, dusk, lamps on) again and again. A small subject
# that blends in (a brown dragonfly on bark) barely moves the features at its cell towards the
# subject's look, but it moves them away from what that cell shows when the scene is empty. So the
# empty class's own training frames give K prototype maps (edge/train/scenes.py), and the
# per-position linear head is fitted on each frame's map minus its nearest prototype. On the device
# the nearest prototype is not looked up: the head's score at a cell is w.f + b - w.P_k, so each
# class keeps K maps of offsets w.P_k and takes min over k of (max over cells of w.f + b - w.P_k).
# For the right scene the residual is small except at the subject; a wrong scene's large
# differences raise its max, so the min picks the right one (the same held-out answers as the
# look-up, measured in docs/design/train.md). The map is layer 16's (16x16x128 on the frame enlarged 2x):
# measured better than layer 22's, and the network ends six layers sooner. In the model: the 1x1
# convolution repeated K times, a SUB of the constant offsets, the 16x16 max pool, then the
# minimum over K.


class Scene(Head):
    name = "scene-2x"
    tap = "layer16_relu6"  # 16x16x128 at 2x
    per_cell = True
    upscale = 2
    # Last but one on a tie: it also depends on the empty scene staying as it was trained. About
    # 3.5x the compute on every frame: it must win by more than a point; one strength (its fits are the slowest).
    preference = -1
    cost_margin = 1.0
    arm_cost = "3.3-4.2x"
    l2_grid = (1e-2,)

    def needs(self, classes: Sequence[str]) -> str | None:
        return None if scenes.empty_class(classes) is not None else f"one class folder {scenes.EMPTY_FOLDER}"

    def fit(self, x: np.ndarray, labels: np.ndarray, classes: int, l2: float, empty: np.ndarray | None = None) -> Fitted:
        onehot, weight = class_weights(labels, classes)
        empty = scenes.empty_rows(self.name, empty)
        x = np.asarray(x, np.float64)
        kernel, bias, offsets = fit_weights(x, onehot, weight, l2, x[empty])
        return SceneFit(self, kernel.astype(np.float32), bias.astype(np.float32), offsets.astype(np.float32))


def residual(maps: np.ndarray, protos: np.ndarray) -> np.ndarray:
    """Each map minus its nearest prototype (by the whole map)."""
    out: np.ndarray = protos[nearest(maps.reshape(len(maps), -1), protos.reshape(len(protos), -1))]
    np.subtract(maps, out, out=out)  # into the gathered prototypes: one copy of the maps, not two
    return out


def fit_weights(
    x: np.ndarray, onehot: np.ndarray, weight: np.ndarray, l2: float, empty_maps: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(D x C kernel, C bias, K x P x C offsets) on raw maps `x` (N x P x D); `empty_maps` are the
    empty class's unaugmented training maps. The residuals are scaled per channel (not centred:
    an empty frame's residual is already about zero) for the fit, then the scale is folded back."""
    protos = scenes.prototypes(empty_maps)
    scale = x.reshape(-1, x.shape[-1]).std(axis=0) + 1e-6
    r = residual(x, protos)
    r /= scale  # in place: at 2x, 500 training images make each copy of the maps 0.4 GB
    w, b = soft_max_descent(r, onehot, weight, l2)
    kernel = w / scale[:, None]
    offsets = np.einsum("kpd,dc->kpc", protos, kernel)
    return kernel, b, offsets


def pooled(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """N x C logits: min over scenes of each class's best cell after that scene's offsets."""
    z = cell_scores(x, kernel, bias)
    out: np.ndarray = np.stack([(z - o).max(axis=1) for o in offsets]).min(axis=0)
    return out


@dataclass(frozen=True)
class SceneFit(Fitted):
    offsets: np.ndarray  # K x cells x N float32: w.P_k per scene prototype

    def logits(self, x: np.ndarray) -> np.ndarray:
        kernel, bias = self.kernel.astype(np.float64), self.bias.astype(np.float64)
        return pooled(np.asarray(x, np.float64), kernel, bias, self.offsets.astype(np.float64))

    def network(self, keras: Any, layers: list[Any], dtype: str) -> Any:
        """The 1x1 convolution once per scene prototype, each copy minus that prototype's offsets
        w.P_k at every cell, the best cell, then the lowest scene."""
        base = backbone(layers, dtype, self.head.upscale)
        n = self.kernel.shape[1]
        cells = base.get_layer(self.head.tap).output
        side, k = int(cells.shape[1]), len(self.offsets)
        conv = keras.layers.Conv2D(k * n, 1, name="logits")
        offsets = self.offsets.reshape(k, side, side, n).transpose(1, 2, 0, 3).reshape(1, side, side, k * n)
        x = conv(cells) - keras.ops.convert_to_tensor(offsets, keras.config.dtype_policy().compute_dtype)
        x = keras.layers.Reshape((k, n), name="per_scene")(keras.layers.MaxPooling2D(pool_size=side, name="maxpool")(x))
        x = keras.layers.Softmax(name="softmax")(keras.ops.min(x, axis=1))
        model = keras.Model(base.inputs, x, name="mnv1_custom")
        conv.set_weights([np.tile(self.kernel, (1, k)).reshape(1, 1, -1, k * n), np.tile(self.bias, k)])
        return model

    def notes(self, classes: Sequence[str]) -> list[str]:
        return [
            *super().notes(classes),
            f"{self.head.name}: scores what differs from {len(self.offsets)} prototypes of the class {classes[scenes.empty_class_of(classes)]!r} "
            "(the empty scene); if the camera is moved or the scene changes for good, capture and train again",
        ]


HEADS = {head.name: head for head in (Scene(),)}
