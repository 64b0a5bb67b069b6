"""Calibrated activation ranges rounded outward to a coarse grid, so a CPU's last-bit float differences cannot change the model."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from edge.convert import flatbuf
from edge.errors import ModelError

# TFLite's calibrator runs the float network with its own kernels, whose summation order depends on
# the CPU's vector width: the same images give activation minima/maxima that differ in the last
# bits on another machine, hence other scales and other bytes. Every calibrated min/max is rounded
# outward to 2^-GRID_BITS of its own magnitude (at most 0.4 % wider, far below what min/max
# calibration itself gets wrong) before the quantizer sees it: a last-bit difference (~1e-7
# relative) then changes a range only if it straddles a grid line, about 1 tensor in 40 000.
GRID_BITS = 8


def round_outward(values: np.ndarray, up: bool) -> np.ndarray:
    """Each value rounded away from the range's inside (max up, min down) to 2^-GRID_BITS of its magnitude."""
    v = np.asarray(values, np.float64)
    _, exponent = np.frexp(np.abs(v))
    step = np.ldexp(1.0, exponent - GRID_BITS)
    rounded = (np.ceil(v / step) if up else np.floor(v / step)) * step
    return np.where(v == 0.0, 0.0, rounded).astype(np.float32)


def round_calibrated(data: bytes) -> bytes:
    """Rewrite every tensor's calibrated min/max in a calibrated (still float) TFLite model."""
    model = flatbuf.read(data, "calibrated model")
    for sg in model.subgraphs:
        for tensor in sg.tensors:
            q = tensor.quantization
            if q is None or q.min is None or q.max is None or not len(q.min):
                continue
            q.min = round_outward(q.min, up=False)
            q.max = round_outward(q.max, up=True)
    return flatbuf.write(model)


@contextlib.contextmanager
def rounded_ranges() -> Iterator[None]:
    """While converting: pass the calibrator's output through `round_calibrated` before quantization.

    TFLiteConverter has no public hook between calibration and quantization (its private
    `_experimental_calibrate_only` would skip its output-type rewrite), so the calibrator's
    `calibrate` is wrapped for the duration; a TensorFlow that no longer calls it is an error,
    not a silently unrounded model."""
    from tensorflow.lite.python.optimize import calibrator

    original = calibrator.Calibrator.calibrate
    calls = 0

    def calibrate(self: Any, dataset_gen: Any) -> bytes:
        nonlocal calls
        calls += 1
        return round_calibrated(bytes(original(self, dataset_gen)))

    calibrator.Calibrator.calibrate = calibrate
    try:
        yield
    finally:
        calibrator.Calibrator.calibrate = original
    if calls != 1:
        raise ModelError(f"TensorFlow called the calibrator {calls} times (expected 1); this TensorFlow version is not supported")
