"""The change head: light and a sub-pixel move drop out, a 6 px subject does not, it needs two classes, one empty."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge import paths
from edge.train import heads
from edge.train.heads import change
from tests.test_train_data import two_classes, write_images


def busy_scenes_task(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Three fixed scenes of per-pixel texture, each frame under its own gain and sensor noise;
    'present' frames have a 6x6 px patch of other texture at a random place (labels: 0 absent)."""
    scenes = rng.integers(30, 200, (3, 128, 128, 3)).astype(np.float64)
    labels = np.arange(n) % 2
    frames = scenes[np.arange(n) % 3] * rng.uniform(0.8, 1.2, (n, 1, 1, 1))
    for i in np.flatnonzero(labels == 1):
        y, x = rng.integers(0, 122, 2)
        frames[i, y : y + 6, x : x + 6] = rng.integers(30, 200, (6, 6, 3))
    frames += rng.normal(0.0, 3.0, frames.shape)
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8), labels


def test_standardised_frames_drop_gain_and_contrast() -> None:
    frame = np.random.default_rng(1).integers(40, 200, (1, 128, 128, 3)).astype(np.float64)
    darker = np.rint((frame - frame.mean()) * 0.8 + frame.mean() * 0.7).astype(np.uint8)
    a, b = change.standardise(frame.astype(np.uint8)), change.standardise(darker)
    assert abs(float(a.mean())) < 1e-6 and abs(float(np.abs(a).mean()) - 2.0) < 2e-2  # the positive deviations' mean is half the absolute's
    assert float(np.abs(a - b).max()) < 0.05  # what is left is the rounding to uint8 levels


def test_box_max_is_the_largest_box_mean() -> None:
    d = np.random.default_rng(2).uniform(0.0, 1.0, (2, 9, 7)).astype(np.float32)
    brute = [max(float(m[i : i + 3, j : j + 3].mean()) for i in range(7) for j in range(5)) for m in d]
    assert np.allclose(change._box_max(d), brute, atol=1e-6)


def test_a_sub_pixel_move_is_no_change_but_a_small_subject_is() -> None:
    """On a real photo: the registration undoes half a pixel's move (the view check reports what it
    cannot, edge/model/viewref.py), a 6x6 px subject stands out; without the registration the move
    would count several times as much."""
    image = Image.open(sorted(paths.dev_images().glob("*.JPEG"))[0]).convert("RGB").resize((136, 136), Image.Resampling.BILINEAR)

    def view(dx: float, dy: float) -> np.ndarray:
        return np.asarray(image.transform((128, 128), Image.Transform.AFFINE, (1, 0, 4 + dx, 0, 1, 4 + dy), Image.Resampling.BILINEAR))

    scene, subject = view(0, 0), view(0, 0).copy()
    subject[60:66, 60:66] = (250, 10, 10)
    d = change.distances(np.stack([scene, view(0.5, 0), view(0.3, -0.4), subject]), change.standardise(scene[None]))[:, 0]
    assert d[0] < 1e-6 and max(d[1], d[2]) < 0.2 * d[3], d
    unregistered = np.abs(change.smooth(change.standardise(view(0.5, 0)[None]) - change.standardise(scene[None]))).sum(axis=-1)
    assert change._box_max(unregistered.astype(np.float32))[0] > 2 * max(d[1], d[2]), d


@pytest.mark.slow
def test_change_head_finds_a_small_subject_on_a_busy_scene() -> None:
    """(Its fit's determinism: tests/test_train_heads.py, for every head.)"""
    frames, labels = busy_scenes_task(np.random.default_rng(3), 120)
    train, test = slice(0, 60), slice(60, None)
    fitted = heads.get("change").fit(frames[train], labels[train], 2, 1e-3, empty=labels[train] == 0)
    assert isinstance(fitted, change.ChangeFit) and fitted.prototypes.shape == (8, 128, 128, 3)
    assert np.array_equal(np.argmax(fitted.logits(frames[test]), axis=1), labels[test])
    # The score is the nearest scene's: for an empty frame, a wrong scene differs everywhere, the right one hardly at all.
    d = change.distances(frames[test][labels[test] == 0][:3], fitted.prototypes)
    assert np.all(d.max(axis=1) > 5 * d.min(axis=1))


@pytest.mark.slow
def test_cli_change_head_needs_two_classes_one_empty(tmp_path: Path) -> None:
    env = os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    three = two_classes(tmp_path / "three")
    write_images(three / "absent", 12, (120, 120, 120))
    for root in (two_classes(tmp_path / "imgs"), three):
        out = tmp_path / "m.tflite"
        cmd = [sys.executable, "-m", "edge", "train", "--images", str(root), "--out", str(out), "--head", "change"]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 65, proc.stderr
        assert proc.stderr.strip().count("\n") == 0 and "--head change needs exactly two class folders, one named absent/" in proc.stderr
        assert list(tmp_path.glob("m.tflite*")) == []


@pytest.mark.slow
def test_the_keras_graph_computes_the_numpy_score() -> None:
    """The model's graph (ChangeFit.network: the move terms, the moved prototypes side by side,
    |frame - moved| as two ReLUs) computes, in float64, the score that the fit and the
    cross-validation use, for frames of the scenes and one slid by half a pixel (so that the move
    terms are not zero; on this per-pixel texture, unlike a photo, such a slide is a change)."""
    import keras

    from edge.train import build

    frames, labels = busy_scenes_task(np.random.default_rng(5), 40)
    fitted = heads.get("change").fit(frames, labels, 2, 1e-3, empty=labels == 0)
    assert isinstance(fitted, change.ChangeFit)
    slid = np.asarray(Image.fromarray(frames[0]).transform((128, 128), Image.Transform.AFFINE, (1, 0, 0.5, 0, 1, 0), Image.Resampling.BILINEAR))
    test = np.concatenate([frames[:6], slid[None]])
    model = build.keras_model([], fitted, "float64")
    score = keras.Model(model.inputs, model.get_layer("head").input)
    got = np.asarray(score(test, training=False))[:, 0]
    expected = change.score(test, fitted.prototypes)
    assert np.allclose(got, expected, rtol=1e-6), (got, expected)
    assert expected[:6][labels[:6] == 1].min() > 3 * expected[:6][labels[:6] == 0].max(), expected
