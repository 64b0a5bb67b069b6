"""The moved-camera guard on real photos: shifts measured, other scenes told apart, one warning per change."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.tasks import dev_rows
from edge import paths
from edge.config import parse
from edge.errors import ModelError
from edge.model import viewref
from edge.model.manifest import load_manifest, manifest_path
from edge.model.viewref import MIN_PEAK, MOVED_PX, ShiftEstimator
from edge.sources import SourceSpec, make_source


def photo(row: int) -> np.ndarray:
    """A dev-set photo as the model's 128x128 input: a fixed camera's view."""
    path = dev_rows(paths.dev_images())[row][0]
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB").resize((128, 128), Image.Resampling.BILINEAR))


def jittered(frame: np.ndarray, rng: np.random.Generator, gain: float = 0.8) -> np.ndarray:
    """Another frame of the same view: darker, with sensor noise."""
    return np.clip(frame * gain + rng.normal(0, 3, frame.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def scenes(shared: Path) -> list[np.ndarray]:
    return [photo(row) for row in (17, 200, 400)]


def strip(scenes: list[np.ndarray]) -> str:
    """The manifest's PNG strip of these views (base64), as `train` stores it."""
    return viewref.encode(np.stack([viewref.grey(s) for s in scenes]))


def references(scenes: list[np.ndarray]) -> np.ndarray:
    """As `train` stores them: grey 64x64, through the manifest's PNG strip."""
    return viewref.decode(strip(scenes))


def test_shifts_are_measured_and_other_views_do_not_match(scenes: list[np.ndarray]) -> None:
    rng = np.random.default_rng(0)
    estimator = ShiftEstimator(references(scenes))
    for frame in scenes:
        shift, peak = estimator.estimate(jittered(frame, rng))
        assert shift < 0.5 and peak > 0.5, (shift, peak)  # darker and noisy is still the view as trained
        for px in (2, 4, 8):
            moved = np.roll(jittered(frame, rng), px, axis=1)  # the view panned by px of 128
            shift, peak = estimator.estimate(moved)
            assert abs(shift - px) < 0.75 and peak > MIN_PEAK, (px, shift, peak)
    for row in (100, 300, 480):
        _, peak = estimator.estimate(photo(row))
        assert peak < MIN_PEAK, (row, peak)


def test_train_keeps_references_only_for_frames_of_one_view(scenes: list[np.ndarray]) -> None:
    """A fixed camera's frames (three light states, as `capture` over a day) get references; photos of
    different places (an orientation or ImageNet-group task) do not: the daemon would call every frame moved."""
    from edge.train import view

    rng = np.random.default_rng(2)
    fixed = [jittered(scenes[i % 3], rng, gain) for i, gain in enumerate(np.linspace(0.7, 1.3, 30))]
    text = view.references(np.stack(fixed[::2]), np.stack(fixed[1::2]))
    assert text is not None and 1 <= len(viewref.decode(text)) <= 8
    diverse = np.stack([photo(row) for row in range(0, 480, 16)])
    assert view.references(diverse[::2], diverse[1::2]) is None


def frames_folder(folder: Path, frames: list[np.ndarray]) -> Path:
    folder.mkdir()
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{i:03d}.png")
    return folder


def test_the_guard_warns_once_when_the_view_moves_and_once_when_it_is_back(
    scenes: list[np.ndarray], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edge")
    rng = np.random.default_rng(1)
    view = scenes[0]
    # Two frames as trained, one odd frame (a subject filling the view), eight moved by 4 px, eight back.
    sequence = [jittered(view, rng) for _ in range(2)] + [photo(300)] + [jittered(np.roll(view, 4, axis=0), rng) for _ in range(8)]
    sequence += [jittered(view, rng) for _ in range(8)]
    folder = frames_folder(tmp_path / "frames", sequence)
    config = parse({"source": {"kind": "images", "images": {"path": str(folder)}, "view_check_s": 0}}).source
    source = make_source(SourceSpec(config, 1.0, view_references=strip(scenes)))
    source.open()
    shifts, off = [], []
    while source.read() is not None:
        shifts.append(source.stats().view_shift_px)
        off.append(source.stats().view_off)
    source.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "edge.sources.moved"]
    assert len(warnings) == 2, warnings
    assert "the view is moved by about 4 px of 128 since the model was trained" in warnings[0] and "train again" in warnings[0]
    assert "the view is back where the model was trained" in warnings[1]
    assert source.stats().view_moved == 1 and shifts[5] >= MOVED_PX and shifts[-1] == 0
    assert off == [0] * 5 + [1] * 8 + [0] * 6  # moved from the 3rd moved frame until the 3rd frame back (3 of 5 checks)

    off = parse({"source": {"kind": "images", "images": {"path": str(folder)}, "view_check_s": -1}}).source
    assert make_source(SourceSpec(off, 1.0, view_references=strip(scenes))).stats().view_moved is None


def test_a_damaged_reference_strip_fails_at_load_naming_the_key(tmp_path: Path, shared: Path) -> None:
    model = tmp_path / "m.tflite"
    shutil.copy(paths.default_model(), model)
    data = json.loads(manifest_path(paths.default_model()).read_text())
    assert "view_references_png_base64" not in data  # the stock model was not trained on one camera's view
    data["view_references_png_base64"] = "bm90IGEgcG5n"  # base64 of "not a png"
    manifest_path(model).write_text(json.dumps(data))
    with pytest.raises(ModelError, match=r"m\.tflite\.json: view_references_png_base64 is not a readable PNG .*re-run `mnv1-edge train`"):
        load_manifest(model)
