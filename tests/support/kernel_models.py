"""Models for the kernel checks: a hand-built int8 mean that x86 XNNPACK before VNNI sums wrongly, and every `train` head on one tiny task.

`python -m tests.support.kernel_models OUT` trains every head of edge/train/head.py on the tiny
parrot task of tests/test_train.py (in one process: TensorFlow loads once) and writes OUT/<head>.tflite
with their manifests, and OUT/frames.npy, the task's frames as the models see them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HALVES = ("upper", "lower")  # the half-brightness model's classes


def half_brightness_model() -> bytes:
    """uint8 RGB 1x128x128x3 in, uint8 1x2 out: the mean of the frame's upper and of its lower half
    (QUANTIZE to int8, RESHAPE to 1x2x8192x3, MEAN over the last two axes, QUANTIZE to uint8). Each
    mean sums one contiguous run of 24576 int8 values: the case XNNPACK's x86 rsum kernels without
    VNNI wrap around in (edge/convert/reductions.py), where a bright or dark frame's halves come out wrong."""
    from edge.convert import flatbuf
    from edge.model.runtime import tflite_schema

    s = tflite_schema()
    model = s.ModelT()
    model.version, model.description = 3, b"half brightness (mnv1-edge tests)"
    model.buffers = [s.BufferT()]
    model.operatorCodes = []
    for code in (flatbuf.QUANTIZE, flatbuf.RESHAPE, flatbuf.MEAN):
        oc = s.OperatorCodeT()
        oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), 2 if code == flatbuf.MEAN else 1
        model.operatorCodes.append(oc)
    sg = s.SubGraphT()
    sg.tensors, sg.operators = [], []

    def tensor(name: str, shape: list[int], kind: int, q: tuple[float, int] | None = None, data: np.ndarray | None = None) -> int:
        t = s.TensorT()
        t.name, t.shape, t.type = name.encode(), np.array(shape, np.int32), kind
        t.quantization = flatbuf.quantization(*q) if q else None
        t.buffer = 0
        if data is not None:
            buffer = s.BufferT()
            buffer.data = np.frombuffer(data.tobytes(), np.uint8)
            model.buffers.append(buffer)
            t.buffer = len(model.buffers) - 1
        sg.tensors.append(t)
        return len(sg.tensors) - 1

    # Brightness in [0, 1] all along (the int8 values are the pixels minus 128: TFLite's uint8 -> int8 QUANTIZE).
    uint8, unit, signed_unit = 3, (1 / 255, 0), (1 / 255, -128)
    pixels = tensor("pixels", [1, 128, 128, 3], uint8, unit)
    signed = tensor("signed", [1, 128, 128, 3], flatbuf.INT8, signed_unit)
    shape = tensor("shape", [4], flatbuf.INT32, data=np.array([1, 2, 8192, 3], "<i4"))
    halves = tensor("halves", [1, 2, 8192, 3], flatbuf.INT8, signed_unit)
    axes = tensor("axes", [2], flatbuf.INT32, data=np.array([2, 3], "<i4"))
    means = tensor("means", [1, 2], flatbuf.INT8, signed_unit)
    out = tensor("brightness", [1, 2], uint8, unit)

    def op(code_index: int, inputs: list[int], outputs: list[int], options: object = None, kind: int = 0) -> None:
        o = s.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = code_index, np.array(inputs, np.int32), np.array(outputs, np.int32)
        o.builtinOptionsType, o.builtinOptions = kind, options
        sg.operators.append(o)

    reshape = s.ReshapeOptionsT()
    reshape.newShape = [1, 2, 8192, 3]
    reducer = s.ReducerOptionsT()
    reducer.keepDims = False
    op(0, [pixels], [signed])
    op(1, [signed, shape], [halves], reshape, s.BuiltinOptions.ReshapeOptions)
    op(2, [halves, axes], [means], reducer, s.BuiltinOptions.ReducerOptions)
    op(0, [means], [out])
    sg.inputs, sg.outputs = np.array([pixels], np.int32), np.array([out], np.int32)
    model.subgraphs = [sg]
    return flatbuf.write(model)


def half_frames() -> list[np.ndarray]:
    """Bright and dark frames whose brighter half alternates: every mean's int8 values are far from zero."""
    frames = []
    for upper, lower in ((250, 215), (205, 240), (40, 10), (15, 50), (235, 200), (30, 5)):
        frame = np.empty((128, 128, 3), np.uint8)
        frame[:64], frame[64:] = upper, lower
        frames.append(frame)
    return frames


def train_heads(out: Path) -> None:
    """Every head on the tiny parrot task (60 frames), gates at zero: the kernel tests measure them."""
    from benchmarks.tasks import presence_task
    from edge import paths
    from edge.model.preprocess import list_images, load_image
    from edge.model.region import NO_CROP
    from edge.train.head import INPUTS
    from edge.train.report import Gate
    from edge.train.run import Options, train

    task = presence_task(out / "task", paths.dev_images(), paths.sample_images() / "parrot.jpg", 60, seed=3)
    for head in INPUTS:
        train(Options(task, out / f"{head}.tflite", source=str(paths.float_model()), head=head, gate=Gate(0.0, 0.0, 0.0)))
    frames = [load_image(p, NO_CROP) for name in ("absent", "present") for p in list_images(task / name)]
    np.save(out / "frames.npy", np.stack(frames))


if __name__ == "__main__":
    train_heads(Path(sys.argv[1]))
