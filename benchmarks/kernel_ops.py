"""Op by op: which op of a model XNNPACK computes otherwise than TFLite's reference kernels on this CPU.

    python -m benchmarks.kernel_ops MODEL FRAMES.npy [--frames N]

Every op is cut out of the model into a one-op model, fed the inputs the reference kernels computed
for it on each frame, and run on XNNPACK and on the reference kernels: so each row is that op's own
difference, not what it inherited. For an int8 MEAN it also gives what XNNPACK's x86 AVX2 sum kernel
(xnn_qs8_rsum_ukernel__avx2_u64_acc2: int16 lanes, wrapping) would compute, modelled in NumPy
(docs/design/numerics.md). FRAMES.npy: N x 128 x 128 x 3 uint8 (benchmarks/numerics.py writes some).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from edge.convert import flatbuf


def one_op_model(data: bytes, index: int) -> tuple[bytes, list[int]]:
    """The model cut down to op `index`: its non-constant inputs become the graph's inputs."""
    from edge.convert.quantize import _prune

    model = flatbuf.read(data, "model")
    sg = model.subgraphs[0]
    op = sg.operators[index]
    constant = {i for i, t in enumerate(sg.tensors) if t.buffer > 0 and model.buffers[t.buffer].data is not None}
    inputs = [int(t) for t in op.inputs if t >= 0 and int(t) not in constant]
    sg.operators, sg.inputs, sg.outputs = [op], np.array(inputs, np.int32), np.array([int(t) for t in op.outputs], np.int32)
    model.signatureDefs = []
    _prune(model, sg)
    return flatbuf.write(model), inputs


def rsum_avx2(values: np.ndarray) -> int:
    """The AVX2 sum of int8 `values` as xnn_qs8_rsum_ukernel__avx2_u64_acc2 computes it: per
    16384-byte block, two accumulators of 16 int16 lanes, each adding the byte pairs of 256 vectors
    with a wrapping add. The tail after the last full block is summed exactly (a 128x128x3 frame has none)."""
    x = values.astype(np.int64).ravel()
    blocks = len(x) // 16384
    lanes = x[: blocks * 16384].reshape(blocks, -1, 2, 16, 2).sum(axis=(1, 4))  # block, accumulator, lane
    wrapped = (lanes + 32768) % 65536 - 32768
    return int(wrapped.sum()) + int(x[blocks * 16384 :].sum())


def compare(data: bytes, frames: np.ndarray) -> list[dict[str, Any]]:
    """Per op: its largest output difference, the frames where it is over a step, and for an int8
    MEAN the frames on which the AVX2 sum kernel wraps."""
    from edge.model import kernels
    from edge.model.interpreter import Interpreter

    model = flatbuf.read(data, "model")
    sg = model.subgraphs[0]
    reference = Interpreter(data, 1, reference_kernels=True, preserve_all_tensors=True)
    captured = []
    for frame in frames:
        reference.set_input(frame)
        reference.invoke()
        captured.append({i: reference.raw.get_tensor(i).copy() for i in range(len(sg.tensors))})
    rows = []
    for index, op in enumerate(sg.operators):
        single, inputs = one_op_model(data, index)
        outs: dict[str, list[np.ndarray]] = {"xnnpack": [], "reference": []}
        for kind in outs:
            interp = kernels.interpreter(single, kind)
            for values in captured:
                for detail, tensor in zip(interp.raw.get_input_details(), inputs, strict=True):
                    interp.raw.set_tensor(detail["index"], values[tensor])
                interp.invoke()
                outs[kind].append(interp.raw.get_tensor(interp.raw.get_output_details()[0]["index"]).astype(np.int64))
        diff = np.abs(np.stack(outs["xnnpack"]) - np.stack(outs["reference"]))
        name = reference.raw._get_ops_details()[index]["op_name"]
        row = {"op": index, "name": name, "max_diff": int(diff.max()), "frames_differing": int(np.sum(diff.reshape(len(frames), -1).max(1) > 1))}
        if flatbuf.opcode(model, op) == flatbuf.MEAN and sg.tensors[int(op.inputs[0])].type == flatbuf.INT8:
            wrapped = [rsum_avx2(v[int(op.inputs[0])]) != int(v[int(op.inputs[0])].astype(np.int64).sum()) for v in captured]
            row["avx2_sum_wraps_on"] = int(sum(wrapped))
        rows.append(row)
    return rows


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", type=Path)
    p.add_argument("frames", type=Path)
    p.add_argument("--frames", dest="count", type=int, default=20, help="first N frames (default: %(default)s)")
    args = p.parse_args(argv)
    frames = np.load(args.frames)[: args.count]
    print(f"{args.model}: each op on XNNPACK against the reference kernels, {len(frames)} frames; steps of its own output")
    for row in compare(args.model.read_bytes(), frames):
        wraps = f", AVX2 sum wraps on {row['avx2_sum_wraps_on']}" if "avx2_sum_wraps_on" in row else ""
        print(f"{row['op']:3} {row['name']:<20} max {row['max_diff']:4}, frames > 1 step: {row['frames_differing']}{wraps}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
