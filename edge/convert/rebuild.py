"""Read the TF1-era float MobileNet v1 0.25/128 .tflite and rebuild it as an equivalent Keras network."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.convert import flatbuf
from edge.convert.flatbuf import AVERAGE_POOL_2D, CONV_2D, DEPTHWISE_CONV_2D, RESHAPE, SOFTMAX
from edge.errors import ModelError
from edge.model.contract import INPUT_SHAPE, NUM_CLASSES

OP_NAMES = {CONV_2D: "CONV_2D", DEPTHWISE_CONV_2D: "DEPTHWISE_CONV_2D", AVERAGE_POOL_2D: "AVERAGE_POOL_2D", RESHAPE: "RESHAPE", SOFTMAX: "SOFTMAX"}
FLOAT32 = 0  # TensorType.FLOAT32
TYPE_NAMES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 9: "int8"}
SAME, RELU6 = 0, 3  # Padding.SAME, ActivationFunctionType.RELU6

# MobileNet v1 at width 0.25: (kind, output channels, stride) for the 27 feature layers.
_POINTWISE = (16, 32, 32, 64, 64, 128, 128, 128, 128, 128, 128, 256, 256)
_DW_STRIDES = (1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1)


def expected_layers() -> list[tuple[str, int, int]]:
    layers = [("conv", 8, 2)]
    channels = 8
    for out, stride in zip(_POINTWISE, _DW_STRIDES, strict=True):
        layers.append(("depthwise", channels, stride))
        layers.append(("conv", out, 1))
        channels = out
    return layers


@dataclass(frozen=True)
class Layer:
    """One convolution of the float network, weights already in Keras layout."""

    kind: str  # "conv" | "depthwise" | "logits"
    kernel: np.ndarray
    bias: np.ndarray
    stride: int


def _tensor_array(model: Any, sg: Any, index: int, where: str) -> np.ndarray:
    tensor = sg.tensors[index]
    if tensor.type != FLOAT32:
        raise ModelError(f"{where}: tensor {tensor.name!r} is not float32; --source must be the official float model, not a quantized one")
    data = model.buffers[tensor.buffer].data
    shape = tuple(int(s) for s in tensor.shape)
    if data is None or len(data) != 4 * int(np.prod(shape)):
        raise ModelError(f"{where}: tensor {tensor.name!r} has no weights of shape {shape}")
    return np.frombuffer(np.asarray(data, dtype=np.uint8).tobytes(), dtype="<f4").reshape(shape).copy()


def read_layers(data: bytes, where: str) -> list[Layer]:
    """Parse the float model and check it is MobileNet v1 0.25/128; returns its 28 convolutions."""
    model = flatbuf.read(data, where)
    if len(model.subgraphs) != 1:
        raise ModelError(f"{where}: {len(model.subgraphs)} subgraphs; expected the single-graph MobileNet v1 0.25/128")
    sg = model.subgraphs[0]
    ops = list(sg.operators)
    codes = [flatbuf.opcode(model, op) for op in ops]
    want_codes = [CONV_2D] + [DEPTHWISE_CONV_2D, CONV_2D] * 13 + [AVERAGE_POOL_2D, CONV_2D, RESHAPE, SOFTMAX]
    arch = "not MobileNet v1 0.25/128 (the official float model)"
    if codes != want_codes:
        got = ",".join(OP_NAMES.get(c, str(c)) for c in codes)
        raise ModelError(
            f"{where}: {arch}: {len(codes)} ops ({got[:60]}…), expected {len(want_codes)}: "
            "CONV_2D, 13x (DEPTHWISE_CONV_2D, CONV_2D), AVERAGE_POOL_2D, CONV_2D, RESHAPE, SOFTMAX"
        )
    inp = sg.tensors[int(sg.inputs[0])]
    if inp.type != FLOAT32:
        kind = TYPE_NAMES.get(int(inp.type), f"type {inp.type}")
        raise ModelError(f"{where}: input is {kind}, not float32 (a quantized model?); --source must be the official float model")
    shape = [int(s) for s in inp.shape]
    if shape != list(INPUT_SHAPE):
        raise ModelError(f"{where}: {arch}: input shape {shape}, expected {list(INPUT_SHAPE)}")
    layers: list[Layer] = []
    for i, ((kind, channels, stride), op) in enumerate(
        zip(
            [*expected_layers(), ("logits", NUM_CLASSES, 1)],
            [o for o in ops if flatbuf.opcode(model, o) in (CONV_2D, DEPTHWISE_CONV_2D)],
            strict=True,
        )
    ):
        weights = _tensor_array(model, sg, int(op.inputs[1]), where)
        bias = _tensor_array(model, sg, int(op.inputs[2]), where)
        opt = op.builtinOptions
        activation = 0 if kind == "logits" else RELU6
        got_out = weights.shape[3] if kind == "depthwise" else weights.shape[0]
        if got_out != channels or bias.shape != (channels,) or opt.strideH != stride or opt.strideW != stride:
            raise ModelError(f"{where}: {arch}: layer {i} has {got_out} channels stride {opt.strideH}, expected {channels} stride {stride}")
        if opt.padding != SAME or opt.fusedActivationFunction != activation:
            raise ModelError(f"{where}: {arch}: layer {i} padding/activation differ from MobileNet v1")
        # TFLite keeps OHWI (conv) and 1HWC (depthwise); Keras wants HWIO and HWC1.
        kernel = weights.transpose(1, 2, 3, 0)
        layers.append(Layer(kind, np.ascontiguousarray(kernel), bias, stride))
    return layers


def build_keras(layers: list[Layer], dtype: str = "float32", upscale: int = 1) -> Any:
    """The equivalent Keras network, but taking raw uint8 RGB: the normalisation is the model's
    first op, so the device feeds camera bytes with no per-pixel arithmetic.

    `upscale` 2 enlarges the 128x128 input bilinearly to 256x256 inside the network before the
    backbone (for `train`'s small-subject heads, edge/train/heads/); the ImageNet head, which
    pools a 4x4 map, is then left out.

    dtype "float64" makes the reference that statistics are measured on: its sums do not depend on
    the CPU's vector width, the thread count or oneDNN, so values rounded from them (bias
    corrections in int32 steps) are the same on every machine."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(dtype)
    try:
        return _build_keras(keras, layers, upscale)
    finally:
        keras.config.set_dtype_policy(previous)


def normalised_input(keras: Any) -> tuple[Any, Any]:
    """(the uint8 RGB input, it in [-1, 1]): the prologue quantize.raw_uint8_input replaces by one QUANTIZE."""
    inp = keras.Input(shape=INPUT_SHAPE[1:], batch_size=1, dtype="uint8", name="rgb")
    return inp, keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="normalize")(keras.ops.cast(inp, "float32"))


def _build_keras(keras: Any, layers: list[Layer], upscale: int) -> Any:
    inp, x = normalised_input(keras)
    if upscale > 1:  # after the normalisation, so the converter's prologue stays CAST, QUANTIZE, MUL, ADD
        side = INPUT_SHAPE[1] * upscale
        x = keras.layers.Resizing(side, side, interpolation="bilinear", name="upscale")(x)
        layers = [layer for layer in layers if layer.kind != "logits"]
    for i, layer in enumerate(layers):
        if layer.kind == "logits":
            x = keras.layers.AveragePooling2D(pool_size=4, strides=2, padding="valid", name="avgpool")(x)
            x = keras.layers.Conv2D(NUM_CLASSES, 1, name="logits")(x)
            x = keras.layers.Reshape((NUM_CLASSES,), name="flatten")(x)
            x = keras.layers.Softmax(name="softmax")(x)
            continue
        if layer.kind == "depthwise":
            conv: Any = keras.layers.DepthwiseConv2D(3, strides=layer.stride, padding="same", name=f"layer{i:02d}_dw")
        else:
            size = layer.kernel.shape[0]
            conv = keras.layers.Conv2D(layer.kernel.shape[3], size, strides=layer.stride, padding="same", name=f"layer{i:02d}_conv")
        x = conv(x)
        x = keras.layers.ReLU(6.0, name=f"layer{i:02d}_relu6")(x)
    model = keras.Model(inp, x, name="mobilenet_v1_025_128")
    convs = [lyr for lyr in model.layers if isinstance(lyr, keras.layers.Conv2D | keras.layers.DepthwiseConv2D)]
    for keras_layer, layer in zip(convs, layers, strict=True):
        keras_layer.set_weights([layer.kernel, layer.bias])
    return model


def float_tflite_probs(source: bytes, frames: np.ndarray) -> np.ndarray:
    """The source model's own softmax on uint8 frames, normalised the way it was trained."""
    from edge.model.interpreter import Interpreter

    # The builtin float kernels, not XNNPACK: the reference the rebuilt network must match.
    model = Interpreter(source, 1, builtin_kernels=True)
    probs = np.empty((len(frames), NUM_CLASSES), np.float32)
    for i, frame in enumerate(frames):
        probs[i] = model.classify(frame)
    return probs


def keras_probs(model: Any, frames: np.ndarray, batch: int = 25) -> np.ndarray:
    out = [np.asarray(model([frames[i : i + batch]], training=False)) for i in range(0, len(frames), batch)]
    return np.concatenate(out).astype(np.float32)


def verify(model: Any, source: bytes, frames: np.ndarray, where: Path | str, tolerance: float = 1e-4) -> float:
    """Refuse a rebuilt network that does not reproduce the source; returns the max difference."""
    diff = float(np.max(np.abs(keras_probs(model, frames) - float_tflite_probs(source, frames))))
    if not diff <= tolerance:
        raise ModelError(f"{where}: rebuilt network differs from the source by {diff:.2e} (> {tolerance:.0e}) in softmax; refusing to quantize")
    return diff
