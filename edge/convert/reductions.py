"""Split int8 means over long contiguous runs in two, so XNNPACK computes them exactly on every x86 CPU."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edge.convert import flatbuf
from edge.convert.ranges import round_outward

# XNNPACK sums int8 values for a MEAN with its rsum kernels. The x86 ones without VNNI
# (xnn_qs8_rsum_ukernel__ssse3_u32_acc2, __avx2_u64_acc2, __avx256skx_u64_acc2; src/qs8-rsum/avx2.c.in,
# "256 int8s may be summed into an int16 before overflowing") add the byte pairs of every vector
# (pmaddubsw with ones) into 16-bit lanes with a wrapping add, 256 vectors per lane and block: 512
# values whose sum passes 32767 as soon as they average more than 64 in magnitude. Measured on the
# change head's mean over the whole 128x128x3 frame: wrong by up to 201 steps on an AVX2 CPU, 63 %
# top-1 agreement with TFLite's reference kernels (docs/design/numerics.md). The Arm kernels (vpadal, 256
# values a lane), the AVX-512 and VNNI ones (128 vectors a block, or dpbusd into 32 bits) are exact.
# A reduction that leaves the innermost axis alone runs the rdsum kernels instead, which widen to
# 32 bits every 252 rows: exact everywhere. So a mean whose innermost contiguous run is longer than
# SAFE_RUN becomes a mean over its outer axes (rdsum) and then one over the innermost axis (a short run).
SAFE_RUN = 4096  # the SSSE3 kernel's tightest case: 4096 bytes / 16 per vector / 2 accumulators = 128 pairs a lane
CALIBRATION_FRAMES = 64  # at most this many calibration frames measure the new intermediate's range


@dataclass(frozen=True)
class Split:
    op: int  # index of the MEAN in the original graph
    outer: tuple[int, ...]  # axes of the first mean (kept, as size 1)
    axes: tuple[int, ...]  # the original axes: the second mean's (those of the first are size 1 by then: only the innermost is summed)


def find(model: Any) -> list[Split]:
    """The int8 MEANs whose innermost contiguous run is longer than SAFE_RUN and that can be split."""
    sg = model.subgraphs[0]
    found = []
    for index, op in enumerate(sg.operators):
        tensor = sg.tensors[int(op.inputs[0])]
        if flatbuf.opcode(model, op) != flatbuf.MEAN or tensor.type != flatbuf.INT8:
            continue
        shape = [int(n) for n in tensor.shape]
        axes = tuple(sorted({int(a) % len(shape) for a in _constant(model, sg, int(op.inputs[1]))}))
        outer = _outer_axes(shape, axes)
        if outer is not None:
            found.append(Split(index, outer, axes))
    return found


def _outer_axes(shape: list[int], axes: tuple[int, ...]) -> tuple[int, ...] | None:
    """The axes to reduce first when XNNPACK would run the reduction as one contiguous sum longer
    than SAFE_RUN: all but the innermost; None when it is short, not contiguous, or cannot be split
    (the innermost axis alone is too long)."""
    dims = [i for i, n in enumerate(shape) if n > 1]  # XNNPACK drops axes of size 1 before choosing its kernel
    if not dims or dims[-1] not in axes:
        return None  # the innermost axis is kept: the rdsum kernels
    run = 1
    for i in reversed(dims):
        if i not in axes:
            break
        run *= shape[i]
    last = dims[-1]
    if run <= SAFE_RUN or shape[last] > SAFE_RUN:
        return None
    outer = tuple(a for a in axes if a != last and shape[a] > 1)
    return outer or None


def split_long_means(data: bytes, frames: np.ndarray) -> bytes:
    """Rewrite every MEAN `find` lists as two; the new intermediate tensor (the per-position means
    of the outer axes) is quantized from its min/max over (at most CALIBRATION_FRAMES of) `frames`,
    as the converter calibrates every other activation. A model without such a mean comes back unchanged."""
    model = flatbuf.read(data, "converted model")
    splits = find(model)
    if not splits:
        return data
    ranges = _intermediate_ranges(data, model, splits, frames)
    sg = model.subgraphs[0]
    ops = list(sg.operators)
    for split, (lo, hi) in zip(reversed(splits), reversed(ranges), strict=True):  # back to front: indices stay valid
        first, second = _two_means(model, sg, ops[split.op], split, lo, hi)
        ops[split.op : split.op + 1] = [first, second]
    sg.operators = ops
    return flatbuf.write(model)


def _intermediate_ranges(data: bytes, model: Any, splits: list[Split], frames: np.ndarray) -> list[tuple[float, float]]:
    """Real-valued min/max over the frames of each split's outer-axes means, rounded outward like every calibrated range."""
    from edge.model.interpreter import Interpreter

    sg = model.subgraphs[0]
    # The built-in integer kernels compute the mean's input the same on every CPU (the arm64 stage checks it).
    interp = Interpreter(data, 1, builtin_kernels=True, preserve_all_tensors=True)
    step = max(1, len(frames) // CALIBRATION_FRAMES)
    lows = np.full(len(splits), np.inf)
    highs = np.full(len(splits), -np.inf)
    for frame in frames[::step]:
        interp.set_input(frame)
        interp.invoke()
        for i, split in enumerate(splits):
            index = int(sg.operators[split.op].inputs[0])
            q = sg.tensors[index].quantization
            x = (interp.raw.get_tensor(index).astype(np.float64) - int(q.zeroPoint[0])) * float(q.scale[0])
            means = x.mean(axis=split.outer)
            lows[i], highs[i] = min(lows[i], float(means.min())), max(highs[i], float(means.max()))
    lo = round_outward(np.minimum(lows, 0.0), up=False)  # int8 ranges hold zero exactly
    hi = round_outward(np.maximum(highs, 0.0), up=True)
    return [(float(a), float(b)) for a, b in zip(lo, hi, strict=True)]


def _two_means(model: Any, sg: Any, op: Any, split: Split, lo: float, hi: float) -> tuple[Any, Any]:
    """MEAN(x, outer, keep_dims) into a new int8 tensor, then MEAN(that, the original axes) with the
    original output and options: the same value (a mean of equal-sized means), each sum short or non-contiguous."""
    from edge.model.runtime import tflite_schema

    schema = tflite_schema()
    source = sg.tensors[int(op.inputs[0])]
    shape = [1 if i in split.outer else int(n) for i, n in enumerate(source.shape)]
    scale = (hi - lo) / 255.0 if hi > lo else 1.0
    zero = int(np.clip(np.round(-128 - lo / scale), -128, 127))
    middle = _tensor(model, sg, f"{_name(source)}/outer_mean", shape, flatbuf.INT8, None, flatbuf.quantization(scale, zero))
    axes_outer = _tensor(model, sg, f"{_name(source)}/outer_axes", [len(split.outer)], flatbuf.INT32, np.array(split.outer, "<i4"))
    axes_second = _tensor(model, sg, f"{_name(source)}/axes", [len(split.axes)], flatbuf.INT32, np.array(split.axes, "<i4"))
    keep = schema.ReducerOptionsT()
    keep.keepDims = True
    first = schema.OperatorT()
    first.opcodeIndex = op.opcodeIndex
    first.inputs = np.array([op.inputs[0], axes_outer], np.int32)
    first.outputs = np.array([middle], np.int32)
    first.builtinOptionsType = schema.BuiltinOptions.ReducerOptions
    first.builtinOptions = keep
    op.inputs = np.array([middle, axes_second], np.int32)  # the original op, now the second mean
    return first, op


def _tensor(model: Any, sg: Any, name: str, shape: list[int], kind: int, values: np.ndarray | None, quantization: Any = None) -> int:
    from edge.model.runtime import tflite_schema

    schema = tflite_schema()
    buffer = schema.BufferT()
    if values is not None:
        buffer.data = np.frombuffer(values.tobytes(), np.uint8)
    model.buffers.append(buffer)
    tensor = schema.TensorT()
    tensor.name, tensor.type, tensor.shape = name.encode(), kind, np.array(shape, np.int32)
    tensor.buffer, tensor.quantization = len(model.buffers) - 1, quantization
    sg.tensors.append(tensor)
    return len(sg.tensors) - 1


def _constant(model: Any, sg: Any, index: int) -> np.ndarray:
    tensor = sg.tensors[index]
    return np.frombuffer(bytes(model.buffers[tensor.buffer].data), "<i4")


def _name(tensor: Any) -> str:
    name = tensor.name
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
