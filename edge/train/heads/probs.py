"""The probabilities head: a linear softmax layer on the backbone's 1001 ImageNet probabilities."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edge.train.heads.base import Fitted, Head, backbone
from edge.train.numeric import accelerated_descent, class_weights, fit_standardised

# What ImageNet's classes say of the frame, re-weighed: the model keeps the ImageNet softmax and
# adds a fully connected layer and a second softmax after it.


class Probs(Head):
    name = "probs"
    tap = "softmax"
    preference = 1  # after features and positions on a tie: int8 rounds small probabilities to zero

    def fit(self, x: np.ndarray, labels: np.ndarray, classes: int, l2: float, empty: np.ndarray | None = None) -> Fitted:
        """Not standardised per input: the probabilities already share one scale, and dividing by
        tiny spreads would make the head lean on probabilities int8 rounds to zero; one scale, their
        root mean square, keeps the descent's step sane."""
        onehot, weight = class_weights(labels, classes)
        x = np.asarray(x, np.float64)
        mean, scale = np.zeros(x.shape[1]), np.full(x.shape[1], float(np.sqrt(np.mean(x * x))) + 1e-12)
        kernel, bias = fit_standardised(accelerated_descent, x, mean, scale, onehot, weight, l2)
        return ProbsFit(self, kernel.astype(np.float32), bias.astype(np.float32))


@dataclass(frozen=True)
class ProbsFit(Fitted):
    def network(self, keras: Any, layers: list[Any], dtype: str) -> Any:
        base = backbone(layers, dtype, self.head.upscale)
        dense = keras.layers.Dense(self.kernel.shape[1], name="head")
        x = keras.layers.Softmax(name="head_softmax")(dense(base.get_layer(self.head.tap).output))
        model = keras.Model(base.inputs, x, name="mnv1_custom")
        dense.set_weights([self.kernel, self.bias])
        return model


HEADS = {head.name: head for head in (Probs(),)}
