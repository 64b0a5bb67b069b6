"""Full-integer quantization (per-channel int8) and the graph edit that makes the input raw uint8."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from edge.convert import flatbuf
from edge.convert.flatbuf import ADD, CAST, CONV_2D, MEAN, MUL, QUANTIZE, RESIZE_BILINEAR
from edge.errors import ModelError

# TFLiteConverter turns the Keras network's `cast → x/127.5 - 1` prologue into CAST (outside XNNPACK),
# QUANTIZE, MUL and ADD; the int8 MUL also coarsens the 256 input levels to ~170. We replace the
# prologue by one QUANTIZE uint8 (scale 1/127.5, zero 128) → int8 (scale 1/127.5, zero 0), i.e. p - 128:
# exact, and TFLite runs it as a byte-wise XOR. The first convolution then sees (p - 128)/127.5, which
# is the float model's (p - 127.5)/127.5 shifted by -1/255; that constant shift is folded into its bias.

INPUT_SCALE = 1.0 / 127.5


def convert(keras_model: Any, frames: np.ndarray, dense_per_tensor: bool = False) -> bytes:
    """Per-channel int8 weights and activations calibrated (min/max) on `frames`; uint8 output; long
    means split for XNNPACK (edge/convert/reductions.py).
    `dense_per_tensor`: fully connected layers' weights get one scale (the change head's layers of
    thousands of outputs would otherwise carry a scale and a zero point per output: 15.3 MB, not
    6.1); the switch is the converter's own, marked experimental in TensorFlow 2.x."""
    import tensorflow as tf

    def representative() -> Iterator[list[np.ndarray]]:
        for frame in frames:
            yield [frame[None]]

    converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_output_type = tf.uint8
    converter._experimental_disable_per_channel_quantization_for_dense_layers = dense_per_tensor
    # The converter prints pages of MLIR diagnostics on stdout/stderr; keep the user's terminal clean.
    # Calibrated ranges are rounded to a grid first, so the bytes do not depend on the CPU (ranges.py).
    from edge.convert.ranges import rounded_ranges

    with quiet(), rounded_ranges():
        data: bytes = converter.convert()
    # A mean over the whole frame (the change head's) would overflow XNNPACK's x86 sum kernels: split it.
    from edge.convert.reductions import split_long_means

    return split_long_means(raw_uint8_input(data), frames)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence Python- and C-level output of the converter (it writes to fds 1 and 2 directly)."""
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def raw_uint8_input(data: bytes) -> bytes:
    """Replace CAST, QUANTIZE, MUL, ADD before the first convolution (or before the RESIZE_BILINEAR
    that enlarges the input for it, or before the MEAN with which the change head standardises the
    frame) by one QUANTIZE uint8 → int8."""
    model = flatbuf.read(data, "converter output")
    sg = model.subgraphs[0]
    ops = list(sg.operators)
    codes = [flatbuf.opcode(model, op) for op in ops[:6]]
    resize = codes[4:6] == [RESIZE_BILINEAR, CONV_2D]
    standardise = codes[4] == MEAN  # the change head subtracts the frame's mean: the input shift drops out
    if codes[:4] != [CAST, QUANTIZE, MUL, ADD] or not (resize or standardise or codes[4] == CONV_2D):
        raise ModelError(f"converter produced an unexpected prologue (op codes {codes}); this TensorFlow version is not supported")
    quantize, first = ops[1], ops[4]  # first: the resize, the convolution or the mean
    conv = None if standardise else ops[5 if resize else 4]
    shifted = sg.tensors[int((conv or first).inputs[0])]
    scale = float(shifted.quantization.scale[0])
    if abs(scale - INPUT_SCALE) > 1e-6 * INPUT_SCALE:
        # ranges.pin_normalised_input fixed it: another scale means the converter quantized otherwise
        raise ModelError(f"the normalised input's scale {scale} is not 1/127.5; this TensorFlow version is not supported")
    model_in = sg.tensors[int(sg.inputs[0])]
    model_in.quantization = flatbuf.quantization(INPUT_SCALE, 128)
    shifted.quantization = flatbuf.quantization(INPUT_SCALE, 0)
    quantize.inputs = np.array([sg.inputs[0]], np.int32)
    if resize:  # bilinear weights sum to 1: the resize passes the input shift below through unchanged
        sg.tensors[int(first.inputs[0])].quantization = flatbuf.quantization(INPUT_SCALE, 0)
    quantize.outputs = np.array([first.inputs[0]], np.int32)
    if conv is not None:
        _fold_input_shift(model, sg, conv)
    sg.operators = [quantize, *ops[4:]]
    _prune(model, sg)
    return flatbuf.write(model)


def _fold_input_shift(model: Any, sg: Any, conv: Any) -> None:
    """The conv sees v - 1/255 instead of v: add sum(W_c)/255 to each bias (exact except at the
    one padded row/column). In int32 bias units (input scale 1/127.5 x weight scale) that is
    sum(q_w)/2 per output channel."""
    weights = sg.tensors[int(conv.inputs[1])]
    bias = sg.tensors[int(conv.inputs[2])]
    qw = np.frombuffer(bytes(model.buffers[weights.buffer].data), np.int8).reshape(tuple(weights.shape))
    qb = np.frombuffer(bytes(model.buffers[bias.buffer].data), "<i4").copy()
    qb += np.round(qw.reshape(qw.shape[0], -1).sum(axis=1, dtype=np.int64) / 2.0).astype(np.int32)
    model.buffers[bias.buffer].data = np.frombuffer(qb.astype("<i4").tobytes(), np.uint8)


def _prune(model: Any, sg: Any) -> None:
    """Drop tensors (and their buffers' data) no op uses any more, renumbering the rest."""
    used = sorted(
        {int(t) for op in sg.operators for t in (*op.inputs, *op.outputs) if t >= 0} | {int(t) for t in sg.inputs} | {int(t) for t in sg.outputs}
    )
    remap = {old: new for new, old in enumerate(used)}
    kept = {sg.tensors[i].buffer for i in used}  # the converter lets equal constants share a buffer
    for t in (t for i, t in enumerate(sg.tensors) if i not in remap):
        if t.buffer > 0 and t.buffer not in kept:
            model.buffers[t.buffer].data = None
    sg.tensors = [sg.tensors[i] for i in used]
    for op in sg.operators:
        op.inputs = np.array([remap[int(t)] if t >= 0 else -1 for t in op.inputs], np.int32)
        op.outputs = np.array([remap[int(t)] for t in op.outputs], np.int32)
    sg.inputs = np.array([remap[int(t)] for t in sg.inputs], np.int32)
    sg.outputs = np.array([remap[int(t)] for t in sg.outputs], np.int32)
    for signature in model.signatureDefs or []:
        for tensor_map in (*(signature.inputs or []), *(signature.outputs or [])):
            tensor_map.tensorIndex = remap[int(tensor_map.tensorIndex)]
