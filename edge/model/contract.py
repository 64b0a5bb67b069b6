"""The model's contract, once: input and output sizes, crop, predictions and dequantization."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

INPUT_SIZE = 128  # pixels per side of the square RGB input
INPUT_SHAPE = (1, INPUT_SIZE, INPUT_SIZE, 3)
NUM_CLASSES = 1001  # ImageNet's 1000 plus class 0, "background"
# The central part of each dimension kept before resizing: how the model was trained and evaluated.
CROP_FRACTION = 0.875
OUTPUT_STEP = 1.0 / 256  # the uint8 probabilities' quantization step (TFLite's softmax output: scale 1/256, zero point 0)


@dataclass(frozen=True)
class Prediction:
    class_index: int
    label: str
    score: float


def top_k(scores: np.ndarray, labels: tuple[str, ...], k: int) -> tuple[Prediction, ...]:
    """The k best classes; ties (common with a uint8 output, whose step is 1/256) go to the
    lower class index, so results are deterministic and match np.argmax."""
    order = np.argsort(-scores, kind="stable")[:k]
    return tuple(Prediction(int(i), labels[int(i)], float(scores[i])) for i in order)


def dequantize(q: np.ndarray, quantization: tuple[float, int], dtype: Any = np.float32) -> np.ndarray:
    """Real values of quantized `q` with the tensor's own (scale, zero point), as pycoral does:
    scale * (q - zero_point) (raw/255 would be wrong). Integer `q` is widened first so the
    subtraction cannot wrap; a float `q` (a mean of quantized values) is used as it is."""
    scale, zero_point = quantization
    values = q.astype(np.int64) if np.issubdtype(q.dtype, np.integer) else q
    return np.asarray(dtype(scale) * (values - zero_point), dtype)


def dequantize_table(quantization: tuple[float, int]) -> np.ndarray:
    """`dequantize` of every uint8 value, so the hot path is one table lookup; a tensor without
    quantization (scale 0) maps to its raw values."""
    scale, zero_point = quantization
    return dequantize(np.arange(256, dtype=np.int32), (scale or 1.0, zero_point))
