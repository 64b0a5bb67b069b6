"""The features head: a linear softmax layer on the backbone's 256 average-pooled features."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edge.train.heads.base import Fitted, Head, backbone
from edge.train.numeric import accelerated_descent, class_weights, fit_standardised, per_channel

# What the network sees in the whole frame, averaged over its last 4x4x256 map: a subject that
# fills a good part of the frame. In the model it replaces the 1001-way 1x1 convolution by an
# N-way one under the same name, so the converter's bias correction sees the same 28 convolutions.


class Features(Head):
    name = "features"
    tap = "avgpool"
    preference = 3  # the stock model's cost and the friendliest to int8: first on a tie
    arm_cost = "0.98-0.99x"

    def fit(self, x: np.ndarray, labels: np.ndarray, classes: int, l2: float, empty: np.ndarray | None = None) -> Fitted:
        """Standardised per feature for the fit, then folded back into the weights."""
        onehot, weight = class_weights(labels, classes)
        x = np.asarray(x, np.float64)
        kernel, bias = fit_standardised(accelerated_descent, x, *per_channel(x), onehot, weight, l2)
        return FeaturesFit(self, kernel.astype(np.float32), bias.astype(np.float32))


@dataclass(frozen=True)
class FeaturesFit(Fitted):
    def network(self, keras: Any, layers: list[Any], dtype: str) -> Any:
        base = backbone(layers, dtype, self.head.upscale)
        n = self.kernel.shape[1]
        x = base.get_layer(self.head.tap).output
        conv = keras.layers.Conv2D(n, 1, name="logits")
        x = keras.layers.Softmax(name="softmax")(keras.layers.Reshape((n,), name="flatten")(conv(x)))
        model = keras.Model(base.inputs, x, name="mnv1_custom")
        conv.set_weights([self.kernel.reshape(1, 1, -1, n), self.bias])
        return model


HEADS = {head.name: head for head in (Features(),)}
