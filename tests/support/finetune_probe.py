"""Does fine-tuning the backbone help the scene head? Float held-out accuracy, frozen vs fine-tuned at fixed steps."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from edge import paths
from edge.train import dataset, heads, numeric, scenes
from edge.train.augment import Augment
from edge.train.heads import scene

# The product keeps the backbone frozen (docs/train.md). This measures what fine-tuning layers
# FIRST..16 (the scene head's input, edge/train/heads/scene.py) jointly with the head would add: the
# frozen fit is the start, the loss is the fit's own (class-balanced softmax on a soft maximum over
# cells of the residual to the nearest empty-scene prototype, L2 on the scaled kernel), prototypes
# follow the layers (each the mean of the same empty frames it started with), full-batch Adam.
# float32 TensorFlow: a measurement, not a reproducible model. Accuracy is reported at fixed steps,
# not picked at the best one: with 200 held-out frames nothing else is left to choose it on.


def probe(images: Path, first: int = 9, rate: float = 3e-4, head_rate: float = 1e-3, checkpoints: tuple[int, ...] = (25, 50, 100)) -> str:
    """One bench line: the frozen scene head's float held-out accuracy on `images` (a presence task,
    `train --held-out 0.5`'s split), then the fine-tuned one's at each checkpoint."""
    import keras
    import tensorflow as tf

    from edge.convert import rebuild

    tap, l2 = heads.get("scene-2x").tap, heads.get("scene-2x").l2_grid[0]
    layers = rebuild.read_layers(paths.float_model().read_bytes(), "float")
    full = rebuild.build_keras(layers, "float32", 2)
    taps = keras.Model(full.inputs, [full.get_layer(f"layer{first - 1:02d}_relu6").output, full.get_layer(tap).output])
    data = dataset.load(images, dataset.Limits(), 1.0)
    train_idx, test = dataset.split(data.paths, data.labels, 0.5)
    frames, labels = Augment().expand(data.frames[train_idx], data.labels[train_idx])
    (x, maps), (xt, maps_t) = _run(taps, frames), _run(taps, data.frames[test])
    empty = (np.arange(len(labels)) < len(train_idx)) & (labels == scenes.empty_class(data.classes))
    onehot = np.eye(len(data.classes))[labels]
    counts = np.bincount(labels).astype(np.float64)
    weight = (len(labels) / (len(counts) * counts))[labels][:, None] / len(labels)

    kernel0, bias0, offsets0 = scene.fit_weights(maps, onehot, weight, l2, maps[empty])

    def right(logits: np.ndarray) -> float:
        return round(100.0 * float(np.mean(np.argmax(logits, axis=1) == data.labels[test])), 1)

    parts = [f"frozen {right(scene.pooled(maps_t, kernel0, bias0, offsets0))}"]

    # The sub-network FIRST..16 with the pretrained weights.
    inp = keras.Input(shape=x.shape[1:])
    h = inp
    convs = []
    for i in range(first, int(tap.removeprefix("layer")[:2]) + 1):
        layer = layers[i]
        if layer.kind == "depthwise":
            conv: Any = keras.layers.DepthwiseConv2D(3, strides=layer.stride, padding="same")
        else:
            conv = keras.layers.Conv2D(layer.kernel.shape[3], layer.kernel.shape[0], strides=layer.stride, padding="same")
        h = keras.layers.ReLU(6.0)(conv(h))
        convs.append((conv, layer))
    net = keras.Model(inp, h)
    for conv, layer in convs:
        conv.set_weights([layer.kernel, layer.bias])

    protos0 = scenes.prototypes(maps[empty])
    members = numeric.nearest(maps[empty].reshape(int(empty.sum()), -1), protos0.reshape(len(protos0), -1))
    mean_of = tf.constant(np.eye(len(protos0))[members].T / np.maximum(np.bincount(members, minlength=len(protos0)), 1)[:, None], tf.float32)
    scale = tf.constant(maps.reshape(-1, maps.shape[-1]).std(axis=0) + 1e-6, tf.float32)
    kernel, bias = tf.Variable(kernel0.astype(np.float32)), tf.Variable(bias0.astype(np.float32))
    xs, ys, ws = tf.constant(x), tf.constant(onehot, tf.float32), tf.constant(weight, tf.float32)
    empty_rows = tf.constant(np.flatnonzero(empty))
    cells, channels = maps.shape[1], maps.shape[2]
    sharp = numeric.SHARPNESS

    def features(batch: Any) -> Any:
        return tf.reshape(net(batch), (-1, cells, channels))

    def prototypes(f: Any) -> Any:
        return tf.einsum("km,mpd->kpd", mean_of, tf.gather(f, empty_rows))

    def loss() -> Any:
        f = features(xs)
        protos = prototypes(f)
        flat, pf = tf.reshape(f, (len(x), -1)), tf.reshape(protos, (len(protos0), -1))
        nearest = tf.stop_gradient(tf.argmin(tf.reduce_sum(pf * pf, 1)[None] - 2.0 * tf.matmul(flat, pf, transpose_b=True), axis=1))
        z = tf.einsum("npd,dc->npc", f - tf.gather(protos, nearest), kernel) + bias
        soft = tf.reduce_logsumexp(sharp * z, axis=1) / sharp - np.log(cells) / sharp
        return -tf.reduce_sum(ws * ys * tf.nn.log_softmax(soft)) + 0.5 * l2 * tf.reduce_sum((kernel * scale[:, None]) ** 2)

    backbone_opt, head_opt = keras.optimizers.Adam(rate), keras.optimizers.Adam(head_rate)
    t0 = time.perf_counter()
    for step in range(1, max(checkpoints) + 1):
        with tf.GradientTape() as tape:
            value = loss()
        grads = tape.gradient(value, [*net.trainable_variables, kernel, bias])
        backbone_opt.apply_gradients(zip(grads[:-2], net.trainable_variables, strict=True))
        head_opt.apply_gradients(zip(grads[-2:], [kernel, bias], strict=True))
        if step in checkpoints:
            f = np.concatenate([np.asarray(features(x[s : s + 100])) for s in range(0, len(x), 100)]).astype(np.float64)
            ft = np.concatenate([np.asarray(features(xt[s : s + 100])) for s in range(0, len(xt), 100)]).astype(np.float64)
            k, b = kernel.numpy().astype(np.float64), bias.numpy().astype(np.float64)
            offsets = np.einsum("kpd,dc->kpc", np.asarray(prototypes(tf.constant(f, tf.float32)), np.float64), k)
            parts.append(f"{step} steps {right(scene.pooled(ft, k, b, offsets))}")
    return f"layers {first}-16, Adam {rate:g}: " + ", ".join(parts) + f" ({time.perf_counter() - t0:.0f} s)"


def _run(model: Any, frames: np.ndarray, batch: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """The input to layer FIRST (as is) and the scene map (N x cells x channels, float64) of `frames`."""
    a, b = [], []
    for start in range(0, len(frames), batch):
        u, v = model([frames[start : start + batch]], training=False)
        a.append(np.asarray(u))
        v = np.asarray(v, np.float64)
        b.append(v.reshape(len(v), -1, v.shape[-1]))
    return np.concatenate(a), np.concatenate(b)
