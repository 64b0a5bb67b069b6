"""Every registered head: declared once, fitted deterministically, and its Keras graph and int8 model compute what its numpy scores say."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge import paths
from edge.train import head, heads, scenes
from edge.train.augment import Augment
from edge.train.heads.base import Head, Views
from tests.test_train_change import busy_scenes_task

REPO = Path(__file__).resolve().parent.parent


def task(h: Head, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A two-class input of the form `h` reads, learnable by it (labels: 0 absent): camera frames
    with a small patch, a signal in one random cell of a map, or one feature out of many."""
    labels = np.arange(n) % 2
    if h.tap is None:
        return busy_scenes_task(rng, n)
    if h.per_cell:
        x = rng.uniform(0, 1, (n, 64, 16))
        x[labels == 1, rng.integers(0, 64, n // 2), 3] += 2.0
        return x, labels
    x = rng.uniform(0, 1, (n, 40))
    x[labels == 1, 5] += 3.0
    return x / x.sum(axis=1, keepdims=True), labels  # rows like probabilities, for the probs head


def arrays(fitted: object) -> dict[str, bytes]:
    return {f.name: v.tobytes() for f in dataclasses.fields(fitted) if isinstance(v := getattr(fitted, f.name), np.ndarray)}  # type: ignore[arg-type]


def test_the_registry_names_each_head_once_and_the_cli_offers_them_all() -> None:
    from edge.cli import build_parser

    assert len(set(heads.NAMES)) == len(heads.NAMES) == len(heads.all_heads())
    assert [h.name for h in heads.all_heads()] == list(heads.NAMES) == list(head.INPUTS)
    with pytest.raises(ValueError, match="no head 'cats'; the heads are features, "):
        heads.get("cats")
    for name in ("auto", *heads.NAMES):
        assert build_parser().parse_args(["train", "--images", "i", "--out", "o", "--head", name]).head == name
    for text in heads.HELP.values():  # --help names the folders the empty-scene heads look for
        assert " named " not in text or all(f" {empty}" in text for empty in scenes.EMPTY_NAMES), text


def test_which_heads_the_class_folders_allow() -> None:
    def allowed(*classes: str) -> list[str]:
        return [h.name for h in heads.all_heads() if h.needs(classes) is None]

    backbone = ["features", "positions"]
    assert allowed("absent", "present") == [*backbone, "scene-2x", "change"]
    assert allowed("none", "cat", "dog") == [*backbone, "scene-2x"]  # the change head answers one yes/no question
    assert allowed("closed", "open") == backbone
    assert (
        heads.get("change").needs(("cat", "dog"))
        == "exactly two class folders, one named absent/background/empty/none/nothing (frames of the scene alone)"
    )


def test_mnv1_edge_help_imports_no_numpy() -> None:
    code = "import sys; from edge.cli import build_parser; build_parser(); print(sorted(m for m in ('numpy', 'PIL') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("name", heads.NAMES)
def test_fit_is_deterministic_and_learns(name: str) -> None:
    """Fitted twice on the same input, the same bytes (the float32 weights the model gets); and it
    tells the held-out part of a task it can see apart."""
    h = heads.get(name)
    x, labels = task(h, np.random.default_rng(3), 60)
    train, test = slice(0, 40), slice(40, None)
    empty = labels[train] == 0  # the empty-scene heads' prototypes; the others ignore it
    fitted = h.fit(x[train], labels[train], 2, h.l2_grid[0], empty)
    again = h.fit(x[train], labels[train], 2, h.l2_grid[0], empty)
    assert fitted.head is h and arrays(fitted) == arrays(again) and {"kernel", "bias"} <= set(arrays(fitted))
    assert fitted.kernel.dtype == fitted.bias.dtype == np.float32 and fitted.kernel.shape[1] == 2
    logits = fitted.logits(x[test])
    assert logits.shape == (20, 2)
    assert np.mean(np.argmax(logits, axis=1) == labels[test]) >= 0.9


@pytest.mark.slow
@pytest.mark.parametrize("name", heads.NAMES)
def test_keras_graph_and_int8_model_match_the_numpy_head(shared: Path, name: str) -> None:
    """The head's float64 Keras network gives the probabilities its numpy scores give, ends where
    the head taps the backbone (or has none), and its int8 model runs its convolutions, pools and
    resizes in XNNPACK."""
    from edge.convert import rebuild
    from edge.train import build

    h = heads.get(name)
    layers = rebuild.read_layers(paths.float_model().read_bytes(), "float")
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, (12, 128, 128, 3), dtype=np.uint8)
    labels = np.arange(12) % 2
    views = Views(frames, labels, Augment(copies=0), frames)
    x = head.training_inputs(layers, [h], views)[name]  # a single output comes back bare from Keras
    assert len(x) == 12 and (x.ndim == 3) == h.per_cell
    fitted = h.fit(x, labels, 2, h.l2_grid[0], labels == 0)
    reference = build.keras_model(layers, fitted, "float64")
    relu6 = [layer.name for layer in reference.layers if layer.name.endswith("_relu6")]
    if h.tap is None:
        assert relu6 == []  # no backbone
    else:
        assert h.tap in [layer.name for layer in reference.layers] and (not h.per_cell or relu6[-1] == h.tap)
    np.testing.assert_allclose(build.keras_probs(reference, frames), fitted.probs(x), atol=1e-5)
    # Calibrated as train calibrates: the change head's frames include dimmed ones, whose means give
    # its standardisation's SUB a range XNNPACK takes (noise frames alone all have the same mean).
    calibration = h.calibration(views, x)
    q = build.quantize(build.keras_model(layers, fitted), reference, calibration, bias_correction=False, dense_per_tensor=h.int8.dense_per_tensor)
    assert not {"MAX_POOL_2D", "CONV_2D", "DEPTHWISE_CONV_2D", "RESIZE_BILINEAR", "SUB", "REDUCE_MIN"} & set(q.cpu_ops)
    int8 = build.tflite_probs(q.plain, frames)
    assert int8.shape == (12, 2) and np.all((int8 >= 0) & (int8 <= 1))
