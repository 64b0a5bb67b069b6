"""The change head: light and a 1 px nudge drop out, a 6 px subject does not, the fit is deterministic, it needs two classes, one empty."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from edge.train import change, head
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
    assert abs(float(a.mean())) < 1e-6 and abs(float(a.std()) - 1.0) < 1e-3
    assert float(np.abs(a - b).max()) < 0.05  # what is left is the rounding to uint8 levels


def test_box_max_is_the_largest_box_mean() -> None:
    d = np.random.default_rng(2).uniform(0.0, 1.0, (2, 9, 7)).astype(np.float32)
    brute = [max(float(m[i : i + 3, j : j + 3].mean()) for i in range(7) for j in range(5)) for m in d]
    assert np.allclose(change._box_max(d), brute, atol=1e-6)


def test_a_one_pixel_nudge_is_no_change_but_a_small_subject_is() -> None:
    rng = np.random.default_rng(4)
    view = np.kron(rng.integers(30, 200, (34, 34, 3)), np.ones((4, 4, 1))).astype(np.uint8)  # 4 px patches of colour
    scene, nudged = view[5:133, 5:133], view[6:134, 4:132]  # moved by a pixel; the rows and columns it brings in repeat the edge
    subject = scene.copy()
    subject[60:66, 60:66] = (250, 10, 10)
    d = change.distances(np.stack([scene, nudged, subject]), change.standardise(scene[None]))[:, 0]
    assert d[0] < 1e-6 and d[1] < 0.1 and d[2] > 3.0, d


def test_change_head_finds_a_small_subject_on_a_busy_scene_and_is_deterministic() -> None:
    frames, labels = busy_scenes_task(np.random.default_rng(3), 120)
    train, test = slice(0, 60), slice(60, None)
    empty = labels[train] == 0
    fitted = head.fit("change", frames[train], labels[train], 2, 1e-3, empty=empty)
    again = head.fit("change", frames[train], labels[train], 2, 1e-3, empty=empty)
    assert fitted.prototypes is not None and again.prototypes is not None and fitted.prototypes.shape == (8, 128, 128, 3)
    assert fitted.kernel.tobytes() == again.kernel.tobytes() and fitted.prototypes.tobytes() == again.prototypes.tobytes()
    assert np.array_equal(np.argmax(fitted.logits(frames[test]), axis=1), labels[test])
    # The score is the nearest scene's: for an empty frame, a wrong scene differs everywhere, the right one hardly at all.
    d = change.distances(frames[test][labels[test] == 0][:3], fitted.prototypes)
    assert np.all(d.max(axis=1) > 5 * d.min(axis=1))


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
