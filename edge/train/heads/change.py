"""The change head: how far a frame is, pixel by pixel, from the nearest frame of the empty scene; no backbone."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from edge.train import conditions, scenes
from edge.train.heads.base import Fitted, Head, Int8, Views
from edge.train.numeric import accelerated_descent, class_weights, fit_standardised, per_channel

# The scene-2x head's last misses were 10-16 px subjects that blend in (a grey-brown dragonfly on
# bark): too small and too like their surroundings for the pretrained filters, yet their pixels still
# differ from the same place in the empty scene, which a fixed camera shows again and again
# (measured in docs/design/train.md). So each frame is standardised (zero mean, over the mean of its
# positive deviations: daylight gain and auto-exposure contrast drop out), smoothed a little,
# registered to each of K prototypes of the empty class's standardised frames (edge/train/scenes.py) and scored by
#     min over k of (max over 3x3 boxes of the box mean of sum over RGB of |residual_k|),
# where residual_k is what is left of the frame minus prototype k after the best small affine move
# of the prototype (a first-order model, below). The right scene differs only where something new
# is; a wrong one differs everywhere. A linear layer on that one number gives the two classes'
# logits. One number answers one question, "is anything there that the empty frames do not show?":
# two classes, one of them the empty scene. It cannot tell a bird from a cat. In the model the
# backbone falls out: the converter's input prologue, then the score's layers (ChangeFit.network).

BOX = 3  # px of the 128: averages sensor noise, keeps a 6 px subject
# The [1, 2, 1] x [1, 2, 1] / 16 smoothing before the comparison: it keeps the first-order move
# model true over a pixel's move (measured, docs/design/train.md: without it a 1 px nudge left 10 of 100
# empty dragonfly frames 'present'; smoothing twice cost the small subjects).
SMOOTH = np.outer([1.0, 2.0, 1.0], [1.0, 2.0, 1.0]) / 16.0
# The spread is a mean of deviations, not their root mean square: in int8 a frame at an eighth of
# the light has a mean of squares 64x smaller than a lit one's, a handful of steps of its range, and
# its standardised pixels came out 7x too small, every dark empty frame "present"; a mean of
# deviations shrinks only 8x, and the calibration's dimmed frames give the gain its range.
EPS = 1e-3  # added to the spread (in the model's [-1, 1] pixel units: an eighth of a level) before the reciprocal
BATCH = 64  # frames standardised at a time: 25 MB in float64


class Change(Head):
    name = "change"
    # Last on a tie: it sees any change, not only the subject. 2.9-4.8x the compute on every frame
    # (it moves every prototype onto the frame): it must win by more than a point. One input, so
    # only the slope shrinks: one strength.
    preference = -2
    cost_margin = 1.0
    arm_cost = "2.9-4.8x"
    l2_grid = (1e-3,)
    # Its convolutions are fixed copies and sums: nothing for the bias correction to correct. Its
    # fully connected layers of thousands of outputs would carry a scale per output (edge/convert/quantize.py).
    int8 = Int8(bias_correction=False, dense_per_tensor=True)

    def needs(self, classes: Sequence[str]) -> str | None:
        if scenes.empty_class(classes) is not None and len(classes) == 2:
            return None
        return f"exactly two class folders, one {scenes.EMPTY_FOLDER}"

    def training_input(self, views: Views, maps: dict[str, np.ndarray]) -> np.ndarray:
        """The frames and their noisy copies only. The head undoes a move of about a pixel itself;
        the random crops move up to 6 % (8 px), which is the view check's to report. Brightness and
        contrast drop out of the standardised frame but for the pixels a x1.25 gain clips, which no
        real frame of that scene clips: measured, they raised the absent views' scores into the
        small subjects' (docs/design/train.md)."""
        still = replace(views.augment, max_shift=0.0, brightness=0.0, contrast=0.0)
        return still.expand(views.originals, views.labels)[0]

    def fit(self, x: np.ndarray, labels: np.ndarray, classes: int, l2: float, empty: np.ndarray | None = None) -> Fitted:
        """`x` is the uint8 frames; the empty class's unaugmented ones give the prototypes."""
        onehot, weight = class_weights(labels, classes)
        protos = prototypes(x[scenes.empty_rows(self.name, empty)])
        nearest = np.asarray(score(x, protos)[:, None], np.float64)  # the one number the linear layer reads, as the model computes it
        kernel, bias = fit_standardised(accelerated_descent, nearest, *per_channel(nearest), onehot, weight, l2)
        return ChangeFit(self, kernel.astype(np.float32), bias.astype(np.float32), protos)

    def calibration(self, views: Views, own: np.ndarray) -> np.ndarray:
        """Its training frames, the originals slid by up to a pixel (int8 must leave its move terms
        that range) and dimmed to the light probe's eighth (and the standardising gain the range
        that undoes it)."""
        return np.concatenate([own, moved(views.originals), conditions.dimmed(views.originals)])


def standardise(frames: np.ndarray) -> np.ndarray:
    """N x H x W x 3 float32: each uint8 frame in the model's [-1, 1] units, its mean minus it (the
    sign: `ChangeFit.network`), over the mean of its positive deviations. The statistics are float64
    sums; the rest is element-wise: the same on every CPU."""
    x = frames.astype(np.float64) / 127.5 - 1.0
    x = x.mean(axis=(1, 2, 3), keepdims=True) - x
    x /= np.maximum(-x, 0.0).mean(axis=(1, 2, 3), keepdims=True) + EPS
    out: np.ndarray = x.astype(np.float32)
    return out


def smooth(z: np.ndarray) -> np.ndarray:
    """N x (H-2) x (W-2) x C: SMOOTH over each valid 3x3 window (the model's depthwise convolution)."""
    h, w = z.shape[1] - 2, z.shape[2] - 2
    out = np.zeros((len(z), h, w, z.shape[3]), np.float64)
    for i in range(3):
        for j in range(3):
            out += SMOOTH[i, j] * z[:, i : i + h, j : j + w]
    return out


def prototypes(frames: np.ndarray) -> np.ndarray:
    """K x H x W x 3 float32 standardised prototypes of the empty class's unaugmented frames."""
    out: np.ndarray = scenes.prototypes(standardise(frames).astype(np.float64)).astype(np.float32)
    return out


class Registration:
    """Each prototype's first-order move model. A frame z that is prototype Q moved by a small
    (dx, dy) that may vary across the frame, dx = a0 + a1 x + a2 y and dy = a3 + a4 x + a5 y (x, y
    in [-1, 1]: a shift, a slight turn or zoom), is z = Q - dx dQ/dx - dy dQ/dy to first order. The
    six a's are the least-squares fit of z - Q on the six maps dQ/dx, x dQ/dx, ..., y dQ/dy: a fixed
    6 x P matrix per prototype (`solve`), one fully connected layer in the model."""

    def __init__(self, protos: np.ndarray) -> None:
        q = smooth(protos.astype(np.float64))
        self.smoothed = q  # K x h x w x 3
        gx, gy = _gradients(q)
        k, h, w, _ = q.shape
        ys, xs = np.meshgrid(np.linspace(-1.0, 1.0, h), np.linspace(-1.0, 1.0, w), indexing="ij")
        self.coords = np.stack([np.ones((h, w)), xs, ys])  # 3 x h x w: the move's terms
        self.gradients = np.stack([gx, gy], axis=1)  # K x 2 x h x w x 3
        self.maps = (self.gradients[:, :, None] * self.coords[None, None, :, :, :, None]).reshape(k, 6, -1)  # K x 6 x P
        self.solve = np.stack([np.linalg.solve(m @ m.T, m) for m in self.maps])  # K x 6 x P: (M M^T)^-1 M

    def residual_sums(self, z: np.ndarray) -> np.ndarray:
        """N x K x h x w: sum over RGB of |residual| of standardised frames `z` against each prototype."""
        zs = smooth(z.astype(np.float64))
        out = np.empty((len(z), *self.smoothed.shape[:3]), np.float32)
        for k in range(len(self.smoothed)):
            r = (zs - self.smoothed[k]).reshape(len(z), -1)
            r -= (r @ self.solve[k].T) @ self.maps[k]
            out[:, k] = np.abs(r.reshape(zs.shape)).sum(axis=-1)
        return out


def _gradients(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Central differences along x and y (one-sided at the border: the edge repeated)."""
    p = np.pad(q, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    return (p[:, 1:-1, 2:] - p[:, 1:-1, :-2]) / 2.0, (p[:, 2:, 1:-1] - p[:, :-2, 1:-1]) / 2.0


def distances(frames: np.ndarray, protos: np.ndarray) -> np.ndarray:
    """N x K: each uint8 frame's largest box mean of the residual sum against each prototype."""
    registration = Registration(protos)
    out = np.empty((len(frames), len(protos)))
    for start in range(0, len(frames), BATCH):
        sums = registration.residual_sums(standardise(frames[start : start + BATCH]))
        out[start : start + BATCH] = _box_max(sums.reshape(-1, *sums.shape[2:])).reshape(len(sums), -1)
    return out


def score(frames: np.ndarray, protos: np.ndarray) -> np.ndarray:
    """N: the distance to the nearest prototype, what the model's linear layer reads."""
    out: np.ndarray = distances(frames, protos).min(axis=1)
    return out


def _box_max(d: np.ndarray) -> np.ndarray:
    """N: the largest BOX x BOX mean of each N x H x W map (valid positions; a fixed summing order)."""
    h, w = d.shape[1] - BOX + 1, d.shape[2] - BOX + 1
    total = np.zeros((len(d), h, w), np.float32)
    for i in range(BOX):
        for j in range(BOX):
            total += d[:, i : i + h, j : j + w]
    out: np.ndarray = total.max(axis=(1, 2)).astype(np.float64) / (BOX * BOX)
    return out


def moved(frames: np.ndarray, px: float = 1.0) -> np.ndarray:
    """The frames each slid by up to `px` in some direction (a fixed spread of sub-pixel shifts,
    bilinear): calibration views, so that int8 leaves the move terms the range a nudged camera needs."""
    from PIL import Image

    out = np.empty_like(frames)
    for i, frame in enumerate(frames):
        angle = 2.399963 * i  # the golden angle: shifts spread evenly over directions and sizes
        radius = px * np.sqrt((i % 7 + 1) / 7)
        dx, dy = radius * np.cos(angle), radius * np.sin(angle)
        img = Image.fromarray(frame).transform(frame.shape[1::-1], Image.Transform.AFFINE, (1, 0, dx, 0, 1, dy), Image.Resampling.BILINEAR)
        out[i] = np.asarray(img)
    return out


@dataclass(frozen=True)
class ChangeFit(Fitted):
    prototypes: np.ndarray  # K x 128 x 128 x 3 float32 standardised empty frames

    def logits(self, x: np.ndarray) -> np.ndarray:
        """N x 2 on uint8 frames `x`."""
        kernel, bias = self.kernel.astype(np.float64), self.bias.astype(np.float64)
        out: np.ndarray = score(x, self.prototypes)[:, None] @ kernel + bias
        return out

    def network(self, keras: Any, layers: list[Any], dtype: str) -> Any:
        """The score and the linear layer on the converter's input prologue (so that
        quantize.raw_uint8_input makes it take the raw camera bytes like every other model)."""
        from edge.convert.rebuild import normalised_input

        reg = Registration(self.prototypes)
        k, n = len(self.prototypes), self.kernel.shape[1]
        h, w, _ = reg.smoothed.shape[1:]

        inp, x = normalised_input(keras)
        mean = keras.ops.mean(x, axis=(1, 2, 3), keepdims=True)
        # The spread's x - mean has its ReLU fused (in XNNPACK); the frame is standardised as mean - x,
        # another op (the converter shares equal subexpressions, and a shared SUB left a lone RELU
        # outside XNNPACK: +2.3 M instructions per frame on an A53); the score is the same for either
        # sign. The reciprocal is a squared reciprocal root: TFLite has no int8 DIV.
        spread = keras.ops.mean(keras.ops.relu(x - mean), axis=(1, 2, 3), keepdims=True)
        root = keras.ops.rsqrt(spread + EPS)
        z = (mean - x) * (root * root)
        smoothing = keras.layers.DepthwiseConv2D(3, padding="valid", name="smooth")
        zs = smoothing(z)
        move = keras.layers.Dense(6 * k, name="move")  # the six move terms of every prototype: a = solve . (zs - Q)
        terms = move(keras.layers.Flatten(name="flatten")(zs))
        # Each prototype moved by its terms, Q + maps^T a (a layer of h x w x 3 outputs per prototype),
        # side by side with the frame copied once per prototype: h x w x 3K, k-major. (The concatenation
        # runs outside XNNPACK, which takes at most 5 inputs; in it, as 4 + 4 inputs of one range, its
        # 3-byte strided copies cost as much: 21.2 against 20.9 M instructions per frame on an A53.)
        each_moved = [keras.layers.Dense(h * w * 3, name=f"moved_{i}") for i in range(k)]
        each = [keras.layers.Reshape((h, w, 3))(layer(terms[:, 6 * i : 6 * i + 6])) for i, layer in enumerate(each_moved)]
        predicted = keras.layers.Concatenate(name="prototypes")(each) if k > 1 else each[0]
        copy = keras.layers.Conv2D(3 * k, 1, use_bias=False, name="copy")
        frame = copy(zs)
        # |frame - predicted| as two subtractions with their ReLUs fused, all in XNNPACK (TFLite's int8
        # ABS and a lone RELU run outside it, with a requantization per element).
        diff = keras.ops.relu(frame - predicted) + keras.ops.relu(predicted - frame)
        rgb_sum = keras.layers.Conv2D(k, 1, use_bias=False, name="rgb_sum")
        box = keras.layers.DepthwiseConv2D(BOX, padding="valid", name="box_mean")
        d = box(rgb_sum(diff))
        d = keras.layers.Reshape((k,), name="per_scene")(keras.layers.MaxPooling2D(pool_size=int(d.shape[1]), name="maxpool")(d))
        dense = keras.layers.Dense(n, name="head")
        out = keras.layers.Softmax(name="softmax")(dense(keras.ops.min(d, axis=1, keepdims=True)))
        model = keras.Model(inp, out, name="mnv1_change")
        smoothing.set_weights([np.repeat(SMOOTH[:, :, None, None], 3, axis=2), np.zeros(3)])
        protos = reg.smoothed.reshape(k, -1)
        move.set_weights([reg.solve.reshape(6 * k, -1).T, -np.einsum("kjp,kp->kj", reg.solve, protos).reshape(-1)])
        for i, layer in enumerate(each_moved):
            layer.set_weights([reg.maps[i], protos[i]])
        copy.set_weights([np.tile(np.eye(3), (1, k)).reshape(1, 1, 3, 3 * k)])
        rgb_sum.set_weights([np.kron(np.eye(k), np.ones((3, 1))).reshape(1, 1, 3 * k, k)])  # each prototype's three channels
        box.set_weights([np.full((BOX, BOX, k, 1), 1.0 / BOX**2), np.zeros(k)])
        dense.set_weights([self.kernel, self.bias])
        return model

    def notes(self, classes: Sequence[str]) -> list[str]:
        empty = scenes.empty_class_of(classes)
        return [
            f"{self.head.name}: says {classes[1 - empty]!r} when the frame's pixels differ from all {len(self.prototypes)} prototypes of "
            f"{classes[empty]!r} somewhere: anything the empty frames do not show (a person, a shadow, a moved chair) counts; "
            f"capture {classes[empty]!r} frames of all that happens without the subject; a camera moved by more than about a "
            "pixel makes every frame count (the daemon's view check reports it); "
            f"{self.head.arm_cost} the stock model's instructions per frame (15.9x with the legacy tflite-runtime: docs/design/train.md)"
        ]


HEADS = {head.name: head for head in (Change(),)}
