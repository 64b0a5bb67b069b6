"""The custom float network (rebuilt backbone + trained head) and its full-integer conversion."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge.convert.output import check_delegation
from edge.train.heads.base import Fitted
from edge.train.report import Metrics, measure


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


def tflite_probs(model: bytes, frames: np.ndarray, kernels: str = "reference") -> np.ndarray:
    """The uint8 model's dequantized probabilities (1 thread) on TFLite's reference kernels (the same
    on every CPU), or on "xnnpack" as this CPU's device path computes them, or "builtin"."""
    from edge.convert import kernelgate

    return kernelgate.probabilities(model, kernelgate.outputs(model, frames, kernels))


KERNEL_FRAMES = 200  # held-out frames, then training frames, on which XNNPACK must agree with the reference kernels


def int8_metrics(
    q: Quantized,
    test: np.ndarray,
    train: np.ndarray,
    labels: np.ndarray,
    classes: tuple[str, ...],
    float_probs: np.ndarray,
    min_kernel_agreement: float,
) -> tuple[list[Metrics], np.ndarray, dict[str, Any], list[str]]:
    """Held-out metrics of the int8 models on the reference kernels (plain, then bias-corrected when
    there is one: the last is the deployed model), the deployed model's held-out probabilities there,
    the deployed model on this CPU's XNNPACK beside them on the held-out and up to KERNEL_FRAMES
    training frames (edge/convert/kernelgate.py), and the kernel gate's failures."""
    from edge.convert import kernelgate

    deployed = q.corrected or q.plain
    count = min(len(train), max(0, KERNEL_FRAMES - len(test)))
    frames = np.concatenate([test, train[np.linspace(0, len(train) - 1, count).astype(np.int64)]]) if count else test
    reference, xnnpack = kernelgate.outputs(deployed, frames, "reference"), kernelgate.outputs(deployed, frames, "xnnpack")
    on_reference = kernelgate.probabilities(deployed, reference[: len(test)])
    held = [measure("int8 plain", tflite_probs(q.plain, test) if q.corrected is not None else on_reference, labels, classes, float_probs)]
    if q.corrected is not None:
        held.append(measure("int8 bias-corrected", on_reference, labels, classes, float_probs))
    here = measure("int8 on XNNPACK here", kernelgate.probabilities(deployed, xnnpack[: len(test)]), labels, classes, float_probs)
    agreement = kernelgate.agreement(reference, xnnpack, min_kernel_agreement)
    kernels = agreement.to_dict() | {
        "accuracy_reference": held[-1].accuracy,
        "accuracy_xnnpack": here.accuracy,
        "agreement_xnnpack_with_float": here.agreement,
        "summary": agreement.summary(),
    }
    return held, on_reference, kernels, agreement.failures()


def keras_probs(model: Any, frames: np.ndarray, batch: int = 50) -> np.ndarray:
    out = [np.asarray(model([frames[i : i + batch]], training=False)) for i in range(0, len(frames), batch)]
    return np.concatenate(out).astype(np.float32)
