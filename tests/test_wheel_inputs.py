"""Labels and calibration crops for a checkout without ../shared, from wheels (built here from ../shared's
own synsets and labels, named as pip saves the pinned ones, so no test needs the index)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from edge import paths
from edge.convert import wheel_inputs
from edge.errors import SourceError
from edge.model.preprocess import list_images


def fake_timm(folder: Path, lemma_edit: str = "") -> Path:
    """A wheel holding the two timm files the labels come from, with ../shared's synsets and lemmas."""
    synsets = (paths.shared_dir() / "data" / "synsets.txt").read_text().split()
    lemmas = paths.labels_file().read_text().splitlines()[1:]
    lemmas[0] += lemma_edit
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / "timm-1.0.31-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(wheel_inputs.SYNSETS, "\n".join(synsets) + "\n")
        z.writestr(wheel_inputs.LEMMAS, "".join(f"{s}\t{name}\n" for s, name in zip(synsets, lemmas, strict=True)))
    return wheel


def test_the_labels_are_byte_for_byte_the_converters(tmp_path: Path, shared: Path) -> None:
    text = wheel_inputs.labels(fake_timm(tmp_path))
    assert text == paths.labels_file().read_text()
    assert hashlib.sha256(text.encode()).hexdigest() == wheel_inputs.LABELS_SHA256


def test_changed_labels_or_members_are_refused(tmp_path: Path, shared: Path) -> None:
    with pytest.raises(SourceError, match="do not match their pinned sha256"):
        wheel_inputs.labels(fake_timm(tmp_path, lemma_edit=" (renamed)"))
    wheel = fake_timm(tmp_path / "ok")
    with pytest.raises(SourceError, match=r"has no skimage/data/astronaut\.png; not the pinned wheel"):
        wheel_inputs.photos(wheel, {"astronaut.png": "0" * 64})
    with pytest.raises(SourceError, match="does not match its pinned sha256"):
        wheel_inputs.member(wheel, wheel_inputs.SYNSETS, "0" * 64)
    junk = tmp_path / "junk.whl"
    junk.write_bytes(b"<html>not a wheel</html>")
    with pytest.raises(SourceError, match="not a readable wheel"):
        wheel_inputs.member(junk, wheel_inputs.SYNSETS)


@pytest.mark.slow
def test_own_photos_are_cropped_for_calibration_afresh(tmp_path: Path, shared: Path) -> None:
    out = tmp_path / "demo"
    fake_timm(out / "wheels")  # found by download(): no index needed
    stale = out / "calibration" / "old_0.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"crop of a photo no longer used")
    count = wheel_inputs.prepare(out, paths.sample_images())
    crops = list_images(out / "calibration")
    per_photo = -(-wheel_inputs.CALIBRATION_CROPS // len(list_images(paths.sample_images())))
    assert count == len(crops) == 8 * per_photo and not stale.exists()
    assert (out / "imagenet_labels.txt").read_text() == paths.labels_file().read_text()
    again = tmp_path / "again"
    fake_timm(again / "wheels")
    wheel_inputs.prepare(again, paths.sample_images())
    assert [p.read_bytes() for p in crops] == [p.read_bytes() for p in list_images(again / "calibration")]  # deterministic


@pytest.mark.slow
def test_too_few_or_unreadable_photos_are_one_line(tmp_path: Path, shared: Path) -> None:
    few = tmp_path / "few"
    few.mkdir()
    for p in list_images(paths.sample_images())[:3]:
        (few / p.name).write_bytes(p.read_bytes())
    out = tmp_path / "demo"
    fake_timm(out / "wheels")
    cmd = [sys.executable, "-m", "edge.convert.wheel_inputs", str(out), "--photos", str(few)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert run.returncode == 69 and run.stderr.count("\n") == 1, run.stderr
    assert f"{few}: 3 photos; calibration needs at least 8" in run.stderr
    for i in range(6):
        (few / f"broken{i}.jpg").write_bytes(b"\xff\xd8 not really a JPEG")
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert run.returncode == 69 and f"{few / 'broken0.jpg'}: not a readable image" in run.stderr and "Traceback" not in run.stderr, run.stderr
