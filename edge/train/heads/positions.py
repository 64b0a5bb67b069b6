"""The per-position head: one linear layer at every cell of layer 22's 8x8 map, then each class's best."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edge.train.heads.base import Fitted, Head, backbone
from edge.train.numeric import class_weights, fit_standardised, per_channel, soft_max_descent

# A subject 5-10 % of the frame's width is 6-13 px of the model's 128: a fraction of one cell of the
# final 4x4 map, so its trace in the 256 average-pooled features is diluted 16-fold by the scene
# around it. Scoring every cell of layer 22's 8x8x128 map (16 px cells, before the last stride) with
# the same linear layer and taking each class's best cell ("some place says present") keeps it
# undiluted; measured in docs/design/train.md. In the model this is CONV_2D 1x1 + MAX_POOL_2D 8x8, both
# XNNPACK ops in int8; layers 23-26 and the ImageNet head fall out. (Subjects smaller than one 16 px
# cell: the scene-2x and change heads.)


class Positions(Head):
    name = "positions"
    tap = "layer22_relu6"  # the last 8x8 map
    per_cell = True
    preference = 2  # second on a tie
    arm_cost = "0.90-0.94x"  # layers 23-26 fall out

    def fit(self, x: np.ndarray, labels: np.ndarray, classes: int, l2: float, empty: np.ndarray | None = None) -> Fitted:
        """Standardised per channel over all cells for the fit, then folded back into the weights."""
        onehot, weight = class_weights(labels, classes)
        x = np.asarray(x, np.float64)
        kernel, bias = fit_standardised(soft_max_descent, x, *per_channel(x), onehot, weight, l2)
        return PositionsFit(self, kernel.astype(np.float32), bias.astype(np.float32))


def cell_scores(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """N x positions x C: the linear layer at every position of `x` (N x positions x D)."""
    n, p, d = x.shape
    z: np.ndarray = (x.reshape(n * p, d) @ kernel).reshape(n, p, -1) + bias
    return z


@dataclass(frozen=True)
class PositionsFit(Fitted):
    def logits(self, x: np.ndarray) -> np.ndarray:
        """N x C: each class's best position; `x` is N x positions x D."""
        kernel, bias = self.kernel.astype(np.float64), self.bias.astype(np.float64)
        out: np.ndarray = cell_scores(np.asarray(x, np.float64), kernel, bias).max(axis=1)
        return out

    def network(self, keras: Any, layers: list[Any], dtype: str) -> Any:
        base = backbone(layers, dtype, self.head.upscale)
        n = self.kernel.shape[1]
        cells = base.get_layer(self.head.tap).output
        conv = keras.layers.Conv2D(n, 1, name="logits")
        pool = keras.layers.MaxPooling2D(pool_size=int(cells.shape[1]), name="maxpool")
        x = keras.layers.Softmax(name="softmax")(keras.layers.Reshape((n,), name="flatten")(pool(conv(cells))))
        model = keras.Model(base.inputs, x, name="mnv1_custom")
        conv.set_weights([self.kernel.reshape(1, 1, -1, n), self.bias])
        return model


HEADS = {head.name: head for head in (Positions(),)}
