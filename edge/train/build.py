"""The custom float network (rebuilt backbone + trained head) and its full-integer conversion."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge.convert.output import check_delegation
from edge.train.heads.base import Fitted


def keras_model(layers: list[Any], fitted: Fitted, dtype: str = "float32") -> Any:
    """The network of uint8 RGB in and the fitted head's probabilities out: the converter's rebuilt
    backbone up to the layer the head taps, then the head's own layers (each head's `network`,
    edge/train/heads/), or, for a head without a tap, the converter's input prologue and its layers.

    `dtype` "float64" gives the reference the quantized model is measured and corrected against:
    its sums do not depend on the CPU's vector width, thread count or oneDNN, so the bias
    correction (rounded to int32 steps) comes out the same everywhere."""
    import keras

    warnings.filterwarnings("ignore", category=UserWarning, module="keras")
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(dtype)  # the new head layers too
    try:
        return fitted.network(keras, layers, dtype)
    finally:
        keras.config.set_dtype_policy(previous)


@dataclass(frozen=True)
class Quantized:
    plain: bytes  # per-channel PTQ
    corrected: bytes | None  # with the converter's layer-by-layer bias correction
    cpu_ops: dict[str, int]  # ops of the deployed model outside XNNPACK


def quantize(model: Any, reference: Any, calibration: np.ndarray, bias_correction: bool, dense_per_tensor: bool = False) -> Quantized:
    """The converter's path: per-channel int8 (`dense_per_tensor`: but the fully connected layers),
    raw uint8 RGB in, uint8 probabilities out; the bias correction measured against the float64 `reference`."""
    from edge.convert import biascorrect
    from edge.convert import quantize as q

    plain = q.convert(model, calibration, dense_per_tensor)
    corrected = None
    if bias_correction:
        means = biascorrect.float_channel_means(reference, calibration)
        corrected, _ = biascorrect.correct(plain, means, calibration)
    return Quantized(plain, corrected, check_delegation(corrected or plain, "trained model"))


def tflite_probs(model: bytes, frames: np.ndarray) -> np.ndarray:
    """The uint8 model's dequantized probabilities (XNNPACK, 1 thread), as the device computes them."""
    from edge.model.contract import dequantize_table
    from edge.model.runtime import make_interpreter

    interp = make_interpreter(model, 1)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    table = dequantize_table(out["quantization"])
    rows = []
    for frame in frames:
        interp.set_tensor(inp["index"], frame[None])
        interp.invoke()
        rows.append(table[interp.get_tensor(out["index"])[0]])
    return np.stack(rows)


def keras_probs(model: Any, frames: np.ndarray, batch: int = 50) -> np.ndarray:
    out = [np.asarray(model([frames[i : i + batch]], training=False)) for i in range(0, len(frames), batch)]
    return np.concatenate(out).astype(np.float32)
