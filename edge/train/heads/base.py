"""What a training head is: what `train` looks up by its name, and the fit, scores and Keras layers it provides."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge.train.augment import Augment
from edge.train.numeric import softmax

# The backbone stays as the converter rebuilds it (frozen): a head is a linear softmax layer on
# what it computes at one layer (or, for the change head, on one number computed from the frame's
# pixels), fitted in float64 in a fixed order (edge/train/numeric.py).

L2_GRID = (1e-3, 1e-2, 1e-1)  # regularisation strengths `auto` cross-validates, unless a head narrows them


@dataclass(frozen=True)
class Int8:
    """How the head's model is quantized (edge/train/build.py: quantize)."""

    bias_correction: bool = True  # the converter's per-channel bias correction applies (given enough training images)
    dense_per_tensor: bool = False  # its fully connected layers take one scale per tensor, not one per channel


@dataclass(frozen=True)
class Views:
    """The training frames, as the heads read them."""

    originals: np.ndarray  # N x 128 x 128 x 3 uint8: the unaugmented training frames
    labels: np.ndarray  # N: their classes
    augment: Augment
    augmented: np.ndarray  # `originals`, then `augment`'s copies of them (Augment.expand)


class Head(abc.ABC):
    """One kind of head, before it is fitted: what the rest of `train` asks of it."""

    name: str  # --head's value and the report's "input"
    tap: str | None = None  # the backbone layer whose output it reads; None: it reads the frames (no backbone)
    per_cell: bool = False  # it reads the tap's cells (N x cells x channels), not one vector per frame
    upscale: int = 1  # how much the model enlarges the 128x128 frame before the backbone
    preference: int = 0  # `auto`'s order on a cross-validation tie, higher first
    cost_margin: float = 0.0  # points of cross-validated accuracy by which it must beat the best other head
    arm_cost: str = "~1x"  # instructions per frame on a Pi's cores (A53-A76) against the stock model's (docs/design/train.md)
    l2_grid: tuple[float, ...] = L2_GRID
    int8: Int8 = Int8()

    def needs(self, classes: Sequence[str]) -> str | None:
        """What the class folders lack for this head (`--head NAME needs ...`); None when it can be trained on them."""
        return None

    def training_input(self, views: Views, maps: dict[str, np.ndarray]) -> np.ndarray:
        """Its input on the training views: by default the backbone's output at its tap (`maps`, by head name)."""
        return maps[self.name]

    @abc.abstractmethod
    def fit(self, x: np.ndarray, labels: np.ndarray, classes: int, l2: float, empty: np.ndarray | None = None) -> Fitted:
        """Class-balanced, L2-regularised softmax regression on its input `x`; `empty` marks the rows
        that are unaugmented frames of the empty class (the heads that compare with the empty scene need them)."""

    def calibration(self, views: Views, own: np.ndarray) -> np.ndarray:
        """The frames int8 ranges are calibrated on (evenly spaced ones; `own` is its training input):
        by default the augmented training views, the light and noise the device will see."""
        return views.augmented


@dataclass(frozen=True)
class Fitted(abc.ABC):
    """A fitted head: its weights, its scores in numpy (float64) and its layers in Keras."""

    head: Head
    kernel: np.ndarray  # D x N float32, on the raw (unstandardised) inputs
    bias: np.ndarray  # N float32

    def logits(self, x: np.ndarray) -> np.ndarray:
        """N x classes on the head's input `x`."""
        kernel, bias = self.kernel.astype(np.float64), self.bias.astype(np.float64)
        out: np.ndarray = np.asarray(x, np.float64) @ kernel + bias
        return out

    def probs(self, x: np.ndarray) -> np.ndarray:
        return softmax(self.logits(x))

    @abc.abstractmethod
    def network(self, keras: Any, layers: list[Any], dtype: str) -> Any:
        """The Keras model from uint8 RGB frames to the head's probabilities (edge/train/build.py sets the dtype policy)."""

    def notes(self, classes: Sequence[str]) -> list[str]:
        """The report's notes on what the head costs or assumes."""
        if self.head.upscale == 1:
            return []
        return [
            f"{self.head.name}: the 128x128 input is enlarged {self.head.upscale}x inside the model, for small subjects: "
            f"{self.head.arm_cost} the stock model's instructions per frame on a Pi's cores (docs/design/train.md); "
            "a head on the frame as it comes keeps the cost of the stock model"
        ]


def backbone(layers: list[Any], dtype: str, upscale: int) -> Any:
    """The converter's rebuilt float network (uint8 RGB in), the frame enlarged `upscale`x inside it."""
    from edge.convert import rebuild
    from edge.convert.quantize import quiet

    with quiet():
        return rebuild.build_keras(layers, dtype, upscale)
