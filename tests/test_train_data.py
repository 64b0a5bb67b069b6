"""Training input without TensorFlow: bad folders (one clear line, exit 65, no model), split, augmentation, the confusion picture."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge.train import dataset
from edge.train.augment import Augment
from edge.train.dataset import DatasetError, Limits
from edge.train.report import Metrics, confusion_png, measure


def write_images(folder: Path, count: int, colour: tuple[int, int, int], size: tuple[int, int] = (176, 132), start: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(sum(colour) + start)
    for i in range(start, start + count):
        pixels = np.clip(np.array(colour) + rng.normal(0, 20, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"img_{i:03d}.jpg")


def two_classes(root: Path, count: int = 12) -> Path:
    write_images(root / "closed", count, (40, 40, 40))
    write_images(root / "open", count, (200, 200, 200))
    return root


def test_loads_classes_in_name_order_and_counts_corrupt_images(tmp_path: Path) -> None:
    root = two_classes(tmp_path / "imgs")
    (root / "open" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    data = dataset.load(root, Limits(), 1.0)
    assert data.classes == ("closed", "open")
    assert data.frames.shape == (24, 128, 128, 3) and data.frames.dtype == np.uint8
    assert np.bincount(data.labels).tolist() == [12, 12]
    assert len(data.skipped) == 1 and "broken.jpg" in data.skipped[0]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda r: r.mkdir(), "no class folders"),
        (lambda r: write_images(r / "only", 12, (1, 2, 3)), "only one class ('only')"),
        (lambda r: (two_classes(r), (r / "empty").mkdir()), "class 'empty' has no image files"),
        (
            lambda r: (two_classes(r), (r / "bad").mkdir(), (r / "bad" / "x.jpg").write_bytes(b"junk")),
            "'bad' has no readable image (1 unreadable)",
        ),
        (lambda r: (two_classes(r), write_images(r / "Open", 12, (9, 9, 9))), "name the same class"),
        (lambda r: (write_images(r / "a", 12, (1, 1, 1)), write_images(r / "b", 12, (9, 9, 9), size=(100, 90))), "too small for the 128x128 input"),
        (lambda r: (write_images(r / "a", 12, (1, 1, 1)), write_images(r / "b", 5, (9, 9, 9))), "'b' has 5; each class needs at least 10"),
        (lambda r: (write_images(r / "a", 50, (1, 1, 1)), write_images(r / "b", 10, (9, 9, 9))), "pass --allow-imbalance"),
    ],
    ids=["empty", "one-class", "no-files", "no-readable", "duplicate", "too-small", "too-few", "imbalanced"],
)
def test_bad_folders_fail_with_one_line(tmp_path: Path, make: object, message: str) -> None:
    root = tmp_path / "imgs"
    make(root)  # type: ignore[operator]
    with pytest.raises(DatasetError, match=None) as info:
        dataset.load(root, Limits(), 1.0)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_non_utf8_class_name(tmp_path: Path) -> None:
    root = two_classes(tmp_path / "imgs")
    os.mkdir(os.fsencode(root) + b"/caf\xe9")
    with pytest.raises(DatasetError, match="not valid UTF-8"):
        dataset.load(root, Limits(), 1.0)


def test_imbalance_allowed_by_flag(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    write_images(root / "a", 50, (1, 1, 1))
    write_images(root / "b", 10, (9, 9, 9))
    assert len(dataset.load(root, Limits(allow_imbalance=True), 1.0).labels) == 60


def test_random_split_is_stratified_deterministic_and_stable_when_images_are_added(tmp_path: Path) -> None:
    root = two_classes(tmp_path / "imgs", 20)
    data = dataset.load(root, Limits(), 1.0)
    split = dataset.split_at_random(data, 0.3)
    train, test = split.train, split.held_out
    assert np.bincount(data.labels[test]).tolist() == [6, 6] and "at random" in split.how
    assert not set(train) & set(test) and len(train) + len(test) == 40
    again = dataset.split_at_random(data, 0.3)
    assert all(np.array_equal(a, b) for a, b in zip((train, test), (again.train, again.held_out), strict=True))
    # More images of one class: no image that was held out moves into training, or back.
    write_images(root / "open", 10, (200, 200, 200), start=20)
    bigger = dataset.load(root, Limits(), 1.0)
    test2 = dataset.split_at_random(bigger, 0.3).held_out
    held = {str(data.paths[i]) for i in test if data.labels[i] == 0}
    assert held == {str(bigger.paths[i]) for i in test2 if bigger.labels[i] == 0}


def capture_named(folder: Path, count: int, colour: tuple[int, int, int], first: float, every: float) -> None:
    """Frames saved as `mnv1-edge capture` names them (UTC time), every `every` seconds from `first`, in shuffled file order."""
    from edge.commands.capture import _save

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(int(first) % 1000)
    for i in rng.permutation(count):
        _save(np.full((128, 128, 3), colour, np.uint8), first + i * every, folder)


def test_capture_times_come_from_the_names_else_the_file_times(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    capture_named(root / "open", 12, (200, 200, 200), 1_764_403_874.25, 2.0)  # 2025-11-29T08:11:14.25Z
    write_images(root / "closed", 12, (40, 40, 40))
    for i, path in enumerate(sorted((root / "closed").iterdir())):
        os.utime(path, (1_000_000 + 60 * (11 - i),) * 2)  # file times run against the names
    (root / "open" / "20251329-000000.000000.jpg").write_bytes((root / "closed" / "img_000.jpg").read_bytes())  # month 13: no time
    os.utime(root / "open" / "20251329-000000.000000.jpg", (5.0, 5.0))
    data = dataset.load(root, Limits(), 1.0)
    assert data.named == 12
    times = dict(zip((p.name for p in data.paths), data.times, strict=True))
    assert times["20251129-081114.250000.jpg"] == 1_764_403_874.25
    assert times["20251129-081116.250000.jpg"] - times["20251129-081114.250000.jpg"] == 2.0
    assert times["img_000.jpg"] == 1_000_000 + 660 and times["20251329-000000.000000.jpg"] == 5.0


def test_split_in_time_holds_out_each_class_latest_frames_with_a_gap(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    capture_named(root / "absent", 40, (90, 90, 90), 1_700_000_000.0, 1.0)
    capture_named(root / "present", 20, (150, 150, 150), 1_700_000_500.0, 3.0)  # another stretch of time, fewer frames
    data = dataset.load(root, Limits(allow_imbalance=True), 1.0)
    split = dataset.split_in_time(data, 0.3, 0.05)
    assert split.how.startswith("in time") and "capture's file names" in split.how
    for cls, (n_train, n_gap, n_test) in enumerate(((26, 2, 12), (13, 1, 6))):
        t = {
            name: np.sort(data.times[idx][data.labels[idx] == cls])
            for name, idx in (("train", split.train), ("gap", split.gap), ("test", split.held_out))
        }
        assert (len(t["train"]), len(t["gap"]), len(t["test"])) == (n_train, n_gap, n_test)
        assert t["train"][-1] < t["gap"][0] <= t["gap"][-1] < t["test"][0]  # every held-out frame is later than every training frame
    assert not set(split.train) & set(split.held_out) and not set(split.gap) & (set(split.train) | set(split.held_out))
    # Cross-validation folds are stretches of time: within a class, a later fold holds only later frames.
    folds = split.folds(data, 4)
    for cls in (0, 1):
        mine = data.labels[split.train] == cls
        stamps, fold = data.times[split.train][mine], folds[mine]
        assert sorted(np.bincount(fold).tolist()) in ([6, 6, 7, 7], [3, 3, 3, 4]) or len(set(fold)) == 4
        assert all(stamps[fold == f].max() < stamps[fold == f + 1].min() for f in range(3))
    # With --gap 0 the held-out frames meet the training frames; the random split keeps its every-4th folds.
    assert len(dataset.split_in_time(data, 0.3, 0.0).gap) == 0
    assert dataset.split_at_random(data, 0.3).folds(data, 4).tolist()[:5] == [0, 1, 2, 3, 0]


def test_augmentation_is_reproducible_and_keeps_labels() -> None:
    frames = np.random.default_rng(1).integers(0, 256, (4, 128, 128, 3), dtype=np.uint8)
    labels = np.array([0, 1, 0, 1])
    a, la = Augment(copies=2).expand(frames, labels)
    b, _ = Augment(copies=2).expand(frames, labels)
    assert a.shape == (12, 128, 128, 3) and la.tolist() == [0, 1, 0, 1] * 3
    assert np.array_equal(a, b) and np.array_equal(a[:4], frames)
    assert not np.array_equal(a[4:8], frames)
    assert "off" in Augment().describe()["horizontal_flip"]


def test_metrics_and_confusion_png() -> None:
    labels = np.array([0, 0, 1, 1, 2, 2])
    probs = np.eye(3)[[0, 1, 1, 1, 2, 0]]
    m = measure("float", probs, labels, ("a", "b", "c"))
    assert m.accuracy == pytest.approx(66.67) and m.confusion == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert m.per_class["b"] == {"precision": pytest.approx(66.67), "recall": 100.0, "support": 2}
    q: Metrics = measure("int8", probs, labels, ("a", "b", "c"), baseline=probs)
    assert q.agreement == 100.0
    png = confusion_png([m, q], ["a", "b", "c"])
    with Image.open(io.BytesIO(png)) as img:
        assert img.format == "PNG" and img.width > img.height > 100


def test_cli_bad_input_exits_65_with_one_line_and_leaves_no_model(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    write_images(root / "only", 12, (1, 2, 3))
    out = tmp_path / "m.tflite"
    env = os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.run(
        [sys.executable, "-m", "edge", "train", "--images", str(root), "--out", str(out)], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 65, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "only one class" in proc.stderr
    assert list(tmp_path.glob("m.tflite*")) == []
