"""Calibrated activation ranges fixed before quantization: rounded outward to a coarse grid, the normalised input pinned to [-1, 1]."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from edge.convert import flatbuf
from edge.convert.flatbuf import ADD, CAST, MUL
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


def pin_normalised_input(data: bytes) -> bytes:
    """Set the calibrated range of the tensor the `x/127.5 - 1` prologue writes (the model input's
    CAST, MUL, ADD) to [-1, 1], whatever the calibration frames' pixels reached.

    The model takes raw camera bytes: every byte 0-255 must map onto the normalised input exactly
    (quantize.raw_uint8_input gives it scale 1/127.5). Min/max calibration would give it the span of
    the calibration frames instead, and a crop whose pixels never reach black or white (a grey
    corridor, a dim lobby) would then make a model whose input scale is not the camera's. A model
    without that prologue is left alone (raw_uint8_input names it)."""
    model = flatbuf.read(data, "calibrated model")
    sg = model.subgraphs[0]
    tensor = int(sg.inputs[0])
    for code in (CAST, MUL, ADD):
        users = [op for op in sg.operators if tensor in op.inputs and flatbuf.opcode(model, op) == code]
        if len(users) != 1:
            return data
        tensor = int(users[0].outputs[0])
    q = sg.tensors[tensor].quantization
    if q is None or q.min is None or not len(q.min):
        return data
    q.min, q.max = np.array([-1.0], np.float32), np.array([1.0], np.float32)
    return flatbuf.write(model)


@contextlib.contextmanager
def rounded_ranges() -> Iterator[None]:
    """While converting: pass the calibrator's output through `round_calibrated` and
    `pin_normalised_input` before quantization.

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
        return pin_normalised_input(round_calibrated(bytes(original(self, dataset_gen))))

    calibrator.Calibrator.calibrate = calibrate
    try:
        yield
    finally:
        calibrator.Calibrator.calibrate = original
    if calls != 1:
        raise ModelError(f"TensorFlow called the calibrator {calls} times (expected 1); this TensorFlow version is not supported")
