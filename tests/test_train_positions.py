"""The per-position heads: the numpy head, the Keras graph and the int8 model agree; it finds a small subject anywhere."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge import paths
from edge.train import head, scene
from edge.train.positions import LAYER


def test_positions_logits_are_each_classes_best_cell() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 6, (5, 64, 8))
    h = head.Head("positions", rng.standard_normal((8, 3)).astype(np.float32), rng.standard_normal(3).astype(np.float32))
    per_cell = x @ h.kernel.astype(np.float64) + h.bias.astype(np.float64)
    assert np.array_equal(h.logits(x), per_cell.max(axis=1))


def test_fit_finds_a_signal_in_one_cell_and_is_deterministic() -> None:
    """'present' frames carry a pattern in one random cell among 64 noisy ones: averaging the cells
    dilutes it 64-fold, scoring each cell does not."""
    rng = np.random.default_rng(1)
    n, d = 120, 16
    x = rng.uniform(0, 1, (n, 64, d))
    labels = np.arange(n) % 2
    x[labels == 1, rng.integers(0, 64, n // 2), 3] += 2.0
    fitted = head.fit("positions", x[:80], labels[:80], 2, 1e-3)
    again = head.fit("positions", x[:80], labels[:80], 2, 1e-3)
    assert fitted.kernel.tobytes() == again.kernel.tobytes() and fitted.bias.tobytes() == again.bias.tobytes()
    assert np.mean(np.argmax(fitted.logits(x[80:]), axis=1) == labels[80:]) >= 0.95


def test_auto_takes_the_2x_head_only_when_it_cross_validates_more_than_a_point_better(monkeypatch: pytest.MonkeyPatch) -> None:
    """positions-2x costs ~4x per frame on the device: a clear win takes it, a win by no more than the margin does not."""
    rng = np.random.default_rng(3)
    n, d = 80, 8
    labels = np.arange(n) % 2
    weak = rng.uniform(0, 1, (n, 64, d))
    weak[labels == 1, rng.integers(0, 64, n // 2), 3] += rng.uniform(0.0, 1.5, n // 2)  # some subjects too faint to find
    strong = rng.uniform(0, 1, (n, 256, d))
    strong[labels == 1, rng.integers(0, 256, n // 2), 3] += 2.0
    kinds = ("positions", "positions-2x")
    kind, _, cv = head.choose({"positions": weak, "positions-2x": strong}, labels, np.arange(n), 2, kinds)
    assert kind == "positions-2x" and cv["positions-2x l2=0.01"] > max(v for k, v in cv.items() if k.startswith("positions ")) + 1.0
    gain = cv["positions-2x l2=0.01"] - max(v for k, v in cv.items() if k.startswith("positions "))
    monkeypatch.setitem(head.COST_MARGIN, "positions-2x", gain)  # a win by exactly the margin is not enough
    kind, _, _ = head.choose({"positions": weak, "positions-2x": strong}, labels, np.arange(n), 2, kinds)
    assert kind == "positions"


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "cells"), [("positions", 64), ("positions-2x", 256), ("scene-2x", 256)])
def test_keras_graph_and_int8_model_match_the_numpy_head(shared: Path, kind: str, cells: int) -> None:
    from edge.convert import rebuild
    from edge.train import build

    layers = rebuild.read_layers(paths.float_model().read_bytes(), "float")
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, (12, 128, 128, 3), dtype=np.uint8)
    inputs = head.backbone_outputs(layers, frames, (kind,))  # a single output comes back bare from Keras
    assert list(inputs) == [kind] and inputs[kind].shape == (12, cells, 128)
    labels = np.arange(12) % 2
    h = head.fit(kind, inputs[kind], labels, 2, 1e-2, empty=labels == 0)  # the empty frames are scene-2x's prototypes
    reference = build.keras_model(layers, h, "float64")
    last = scene.LAYER if kind == "scene-2x" else LAYER  # the network ends at the head's map
    assert [layer.name for layer in reference.layers if layer.name.endswith("_relu6")][-1] == last
    np.testing.assert_allclose(build.keras_probs(reference, frames), h.probs(inputs[kind]), atol=1e-5)
    q = build.quantize(build.keras_model(layers, h), reference, frames, bias_correction=False)
    assert not {"MAX_POOL_2D", "CONV_2D", "RESIZE_BILINEAR", "SUB", "REDUCE_MIN"} & set(q.cpu_ops)  # all in XNNPACK
    int8 = build.tflite_probs(q.plain, frames)
    assert int8.shape == (12, 2) and np.all((int8 >= 0) & (int8 <= 1))
