"""The scene head: it finds a subject that blends into the scene, picks the right scene without a lookup, and needs an empty class."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge.train import heads, scenes
from edge.train.heads import scene
from tests.test_train_data import two_classes


def camouflage_task(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Three fixed scenes of 64 cells; a third of every scene's cells already look like the subject
    (bark behind a dragonfly). 'present' frames put the subject on another cell, so the subject's
    look alone cannot tell the classes apart; only the change from the empty scene can."""
    d = 8
    subject = np.zeros(d)
    subject[3] = 3.0
    scenes = rng.normal(0.0, 1.0, (3, 64, d))
    scenes[:, :21] = subject
    labels = np.arange(n) % 2  # 0 = absent, 1 = present
    x = scenes[np.arange(n) % 3] + rng.normal(0.0, 0.05, (n, 64, d))
    present = np.flatnonzero(labels == 1)
    x[present, rng.integers(21, 64, len(present))] = subject + rng.normal(0.0, 0.05, (len(present), d))
    return x, labels


@pytest.mark.slow
def test_scene_head_finds_what_the_per_position_head_cannot() -> None:
    """(Its fit's determinism: tests/test_train_heads.py, for every head.)"""
    x, labels = camouflage_task(np.random.default_rng(5), 240)
    train, test = slice(0, 120), slice(120, None)
    fitted = heads.get("scene-2x").fit(x[train], labels[train], 2, 1e-2, empty=labels[train] == 0)
    assert isinstance(fitted, scene.SceneFit) and fitted.offsets.shape == (8, 64, 2)
    plain = heads.get("positions").fit(x[train], labels[train], 2, 1e-2)
    scene_acc = np.mean(np.argmax(fitted.logits(x[test]), axis=1) == labels[test])
    plain_acc = np.mean(np.argmax(plain.logits(x[test]), axis=1) == labels[test])
    assert scene_acc >= 0.95 and plain_acc <= 0.8, (scene_acc, plain_acc)


def test_min_over_scenes_of_the_best_cell_is_the_nearest_scenes_answer() -> None:
    """The device takes min over prototypes of (max over cells of w.f + b - w.P_k) instead of looking
    up the nearest prototype; on well separated scenes the two give the same answers."""
    x, labels = camouflage_task(np.random.default_rng(6), 120)
    fitted = heads.get("scene-2x").fit(x, labels, 2, 1e-2, empty=labels == 0)
    protos = scenes.prototypes(x[labels == 0])
    kernel, bias = fitted.kernel.astype(np.float64), fitted.bias.astype(np.float64)
    looked_up = (np.einsum("npd,dc->npc", scene.residual(x, protos), kernel) + bias).max(axis=1)
    assert np.array_equal(np.argmax(fitted.logits(x), axis=1), np.argmax(looked_up, axis=1))


def test_empty_class_by_name() -> None:
    assert scenes.empty_class(("Absent", "present")) == 0
    assert scenes.empty_class(("door", "None")) == 1
    assert scenes.empty_class(("closed", "open")) is None
    assert scenes.empty_class(("none", "empty", "cat")) is None  # two: which one is the scene alone is not clear


def test_cli_scene_head_without_an_empty_class_is_one_line_exit_65_before_tensorflow(tmp_path: Path) -> None:
    root = two_classes(tmp_path / "imgs")
    out = tmp_path / "m.tflite"
    env = os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    cmd = [sys.executable, "-m", "edge", "train", "--images", str(root), "--out", str(out), "--head", "scene-2x"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 65, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "needs one class folder named absent/background/empty/none/nothing" in proc.stderr
    assert list(tmp_path.glob("m.tflite*")) == []
