"""The custom float network (rebuilt backbone + trained head) and its full-integer conversion."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge.convert.output import check_delegation
from edge.train import change, positions, scene
from edge.train.head import POSITIONS, Head
from edge.train.report import Metrics, measure


def keras_model(layers: list[Any], head: Head, dtype: str = "float32") -> Any:
    """The converter's rebuilt network (uint8 RGB in) with the trained head in place of ImageNet's.

    A features head replaces the 1001-way 1x1 convolution by an N-way one under the same name, so
    the converter's bias correction sees the same 28 convolutions; a probabilities head keeps the
    ImageNet softmax and adds a fully connected layer and a second softmax after it; a positions
    head ends the network at layer 22 (24 convolutions, the last the N-way 1x1 one), after a 2x
    bilinear enlargement of the input for positions-2x; scene-2x ends at layer 16 of the 2x frame;
    the change head keeps only the input's normalisation (edge/train/change.py).

    `dtype` "float64" gives the reference the quantized model is measured and corrected against:
    its sums do not depend on the CPU's vector width, thread count or oneDNN, so the bias
    correction (rounded to int32 steps) comes out the same everywhere."""
    import keras

    from edge.convert import rebuild
    from edge.convert.quantize import quiet

    warnings.filterwarnings("ignore", category=UserWarning, module="keras")
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(dtype)  # the new head layers too
    try:
        if head.prototypes is not None:
            return _change_model(keras, head)
        with quiet():
            base = rebuild.build_keras(layers, dtype, head.upscale)
        return _with_head(keras, base, head)
    finally:
        keras.config.set_dtype_policy(previous)


def _with_head(keras: Any, base: Any, head: Head) -> Any:
    n = head.kernel.shape[1]
    if head.kind == "features":
        x = base.get_layer("avgpool").output
        conv = keras.layers.Conv2D(n, 1, name="logits")
        x = keras.layers.Softmax(name="softmax")(keras.layers.Reshape((n,), name="flatten")(conv(x)))
        model = keras.Model(base.inputs, x, name="mnv1_custom")
        conv.set_weights([head.kernel.reshape(1, 1, -1, n), head.bias])
        return model
    if head.offsets is not None:
        # scene-2x (edge/train/scene.py): the 1x1 convolution once per scene prototype, each copy
        # minus that prototype's offsets w.P_k at every cell, the best cell, then the lowest scene.
        cells = base.get_layer(scene.LAYER).output
        side, k = int(cells.shape[1]), len(head.offsets)
        conv = keras.layers.Conv2D(k * n, 1, name="logits")
        offsets = head.offsets.reshape(k, side, side, n).transpose(1, 2, 0, 3).reshape(1, side, side, k * n)
        x = conv(cells) - keras.ops.convert_to_tensor(offsets, keras.config.dtype_policy().compute_dtype)
        x = keras.layers.Reshape((k, n), name="per_scene")(keras.layers.MaxPooling2D(pool_size=side, name="maxpool")(x))
        x = keras.layers.Softmax(name="softmax")(keras.ops.min(x, axis=1))
        model = keras.Model(base.inputs, x, name="mnv1_custom")
        conv.set_weights([np.tile(head.kernel, (1, k)).reshape(1, 1, -1, k * n), np.tile(head.bias, k)])
        return model
    if head.kind in POSITIONS:
        # The same 1x1 convolution at each cell of layer 22's map (8x8, or 16x16 after the 2x
        # enlargement), then each class's best cell; layers 23-26 and the ImageNet head fall out.
        cells = base.get_layer(positions.LAYER).output
        conv = keras.layers.Conv2D(n, 1, name="logits")
        pool = keras.layers.MaxPooling2D(pool_size=int(cells.shape[1]), name="maxpool")
        x = keras.layers.Softmax(name="softmax")(keras.layers.Reshape((n,), name="flatten")(pool(conv(cells))))
        model = keras.Model(base.inputs, x, name="mnv1_custom")
        conv.set_weights([head.kernel.reshape(1, 1, -1, n), head.bias])
        return model
    dense = keras.layers.Dense(n, name="head")
    x = keras.layers.Softmax(name="head_softmax")(dense(base.get_layer("softmax").output))
    model = keras.Model(base.inputs, x, name="mnv1_custom")
    dense.set_weights([head.kernel, head.bias])
    return model


def _change_model(keras: Any, head: Head) -> Any:
    """edge/train/change.py's score and linear layer, on the converter's input prologue (so that
    quantize.raw_uint8_input makes it take the raw camera bytes like every other model)."""
    from edge.convert.rebuild import normalised_input

    assert head.prototypes is not None
    reg = change.Registration(head.prototypes)
    k, n = len(head.prototypes), head.kernel.shape[1]
    h, w, _ = reg.smoothed.shape[1:]

    inp, x = normalised_input(keras)
    x = x - keras.ops.mean(x, axis=(1, 2, 3), keepdims=True)
    z = x * keras.ops.rsqrt(keras.ops.mean(x * x, axis=(1, 2, 3), keepdims=True) + change.EPS)
    smooth = keras.layers.DepthwiseConv2D(3, padding="valid", name="smooth")
    zs = smooth(z)
    move = keras.layers.Dense(6 * k, name="move")  # the six move terms of every prototype: a = solve . (zs - Q)
    terms = move(keras.layers.Flatten(name="flatten")(zs))
    # Each prototype moved by its terms, Q + maps^T a (a layer of h x w x 3 outputs per prototype),
    # side by side with the frame copied once per prototype: h x w x 3K, k-major. (The concatenation
    # runs outside XNNPACK, which takes at most 5 inputs; in it, as 4 + 4 inputs of one range, its
    # 3-byte strided copies cost as much: 21.2 against 20.9 M instructions per frame on an A53.)
    moved = [keras.layers.Dense(h * w * 3, name=f"moved_{i}") for i in range(k)]
    each = [keras.layers.Reshape((h, w, 3))(layer(terms[:, 6 * i : 6 * i + 6])) for i, layer in enumerate(moved)]
    predicted = keras.layers.Concatenate(name="prototypes")(each) if k > 1 else each[0]
    copy = keras.layers.Conv2D(3 * k, 1, use_bias=False, name="copy")
    frame = copy(zs)
    # |frame - predicted| as two subtractions with their ReLUs fused, all in XNNPACK (TFLite's int8
    # ABS and a lone RELU run outside it, with a requantization per element).
    diff = keras.ops.relu(frame - predicted) + keras.ops.relu(predicted - frame)
    rgb_sum = keras.layers.Conv2D(k, 1, use_bias=False, name="rgb_sum")
    box = keras.layers.DepthwiseConv2D(change.BOX, padding="valid", name="box_mean")
    d = box(rgb_sum(diff))
    d = keras.layers.Reshape((k,), name="per_scene")(keras.layers.MaxPooling2D(pool_size=int(d.shape[1]), name="maxpool")(d))
    dense = keras.layers.Dense(n, name="head")
    out = keras.layers.Softmax(name="softmax")(dense(keras.ops.min(d, axis=1, keepdims=True)))
    model = keras.Model(inp, out, name="mnv1_change")
    smooth.set_weights([np.repeat(change.SMOOTH[:, :, None, None], 3, axis=2), np.zeros(3)])
    protos = reg.smoothed.reshape(k, -1)
    move.set_weights([reg.solve.reshape(6 * k, -1).T, -np.einsum("kjp,kp->kj", reg.solve, protos).reshape(-1)])
    for i, layer in enumerate(moved):
        layer.set_weights([reg.maps[i], protos[i]])
    copy.set_weights([np.tile(np.eye(3), (1, k)).reshape(1, 1, 3, 3 * k)])
    rgb_sum.set_weights([np.kron(np.eye(k), np.ones((3, 1))).reshape(1, 1, 3 * k, k)])  # each prototype's three channels
    box.set_weights([np.full((change.BOX, change.BOX, k, 1), 1.0 / change.BOX**2), np.zeros(k)])
    dense.set_weights([head.kernel, head.bias])
    return model


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
) -> tuple[list[Metrics], dict[str, Any], list[str]]:
    """Held-out metrics of the int8 models on the reference kernels (plain, then bias-corrected when
    there is one: the last is the deployed model), the deployed model on this CPU's XNNPACK beside
    them on the held-out and up to KERNEL_FRAMES training frames (edge/convert/kernelgate.py), and
    the kernel gate's failures."""
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
    return held, kernels, agreement.failures()


def keras_probs(model: Any, frames: np.ndarray, batch: int = 50) -> np.ndarray:
    out = [np.asarray(model([frames[i : i + batch]], training=False)) for i in range(0, len(frames), batch)]
    return np.concatenate(out).astype(np.float32)
