"""Empirical bias correction, layer by layer, directly on the quantized model's int32 biases."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edge.convert import flatbuf
from edge.convert.dataset import Progress
from edge.model.contract import dequantize
from edge.model.engine import REQUIRED_DELEGATED as CONV_OPS  # the convolutions, by op name
from edge.model.interpreter import Interpreter

# For each convolution in network order, the quantized model (with every earlier layer already
# corrected) runs on the calibration frames; the per-channel mean of its dequantized output minus
# the float network's is subtracted from that layer's bias. Editing the int32 bias in the flatbuffer
# is what re-converting with a corrected float bias would give, minus the re-calibration of the
# activation ranges (which a mean shift barely moves), at the cost of one integer-only pass per layer
# instead of one TFLiteConverter run per layer.


@dataclass(frozen=True)
class LayerFix:
    layer: int
    mean_abs_error_before: float  # mean over channels of |mean output error|, in real units
    max_shift_lsb: int  # largest bias change, in int32 bias units


def float_channel_means(keras_model: Any, frames: np.ndarray, batch: int = 25) -> list[np.ndarray]:
    """Per-channel mean of each convolution's output (after ReLU6; logits before softmax)."""
    import keras

    names = [layer.name for layer in keras_model.layers]
    taps = [n for n in names if n.endswith("_relu6")] + ["logits"]
    probe = keras.Model(keras_model.inputs, [keras_model.get_layer(n).output for n in taps])
    sums = [np.zeros(0)] * len(taps)
    for start in range(0, len(frames), batch):
        outs = probe([frames[start : start + batch]], training=False)
        for i, out in enumerate(outs):
            s = np.asarray(out, np.float64).sum(axis=(0, 1, 2))
            sums[i] = s if start == 0 else sums[i] + s
    return [s / (len(frames) * _spatial(keras_model.get_layer(n).output.shape)) for s, n in zip(sums, taps, strict=True)]


def _spatial(shape: Any) -> int:
    return int(shape[1]) * int(shape[2])


def quantized_channel_mean(data: bytes, frames: np.ndarray, layer: int) -> np.ndarray:
    """Per-channel mean of the dequantized output of convolution number `layer`."""
    # Integer reference kernels with every tensor kept (no XNNPACK), so each layer's output is readable.
    model = Interpreter(data, 1, builtin_kernels=True, preserve_all_tensors=True)
    convs = [op for op in model.raw._get_ops_details() if op["op_name"] in CONV_OPS]
    out_index = int(convs[layer]["outputs"][0])
    quantization = model.raw._get_tensor_details(out_index, 0)["quantization"]
    total = np.zeros(0)
    for i, frame in enumerate(frames):
        model.set_input(frame)
        model.invoke()
        q = model.raw.get_tensor(out_index)
        s = q.reshape(-1, q.shape[-1]).sum(axis=0, dtype=np.int64)
        total = s if i == 0 else total + s
    count = len(frames) * int(np.prod(q.shape[1:-1]))
    return dequantize(total / count, quantization, np.float64)  # the mean of dequantized = dequantized mean


def correct(data: bytes, float_means: list[np.ndarray], frames: np.ndarray) -> tuple[bytes, list[LayerFix]]:
    """Correct every convolution's bias in order; returns the new model and what each fix did."""
    model = flatbuf.read(data, "quantized model")
    sg = model.subgraphs[0]
    convs = [op for op in sg.operators if flatbuf.opcode(model, op) in (flatbuf.CONV_2D, flatbuf.DEPTHWISE_CONV_2D)]
    if len(convs) != len(float_means):
        raise ValueError(f"{len(convs)} convolutions in the quantized model, {len(float_means)} in the float one")
    fixes: list[LayerFix] = []
    bar = Progress("bias correction", len(convs))
    for layer, op in enumerate(convs):
        error = quantized_channel_mean(data, frames, layer) - float_means[layer]
        bias = sg.tensors[int(op.inputs[2])]
        bias_scale = np.asarray(bias.quantization.scale, np.float64)
        buffer = model.buffers[bias.buffer]
        qb = np.frombuffer(bytes(buffer.data), "<i4").astype(np.int64)
        shift = np.round(error / bias_scale).astype(np.int64)
        qb = np.clip(qb - shift, -(2**31), 2**31 - 1)
        buffer.data = np.frombuffer(qb.astype("<i4").tobytes(), np.uint8)
        data = flatbuf.write(model)
        fixes.append(LayerFix(layer, round(float(np.mean(np.abs(error))), 6), int(np.max(np.abs(shift)))))
        bar.step()
    bar.done()
    return data, fixes
