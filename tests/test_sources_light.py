"""The light check: the vote, a manifest's light_range, and a real daemon told once when its frames go dark and once when the light is back."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge import paths
from edge.errors import ModelError
from edge.model.light import CHECKS, NEED, LightRange, LightVote, luma
from edge.model.manifest import Manifest, load_manifest, manifest_path
from tests.support.daemon import EXE, write_config

TRAINED = LightRange(90.0, 115.0)  # the highway crop's training light (docs/design/light-check.md)


def dimmed(frame: np.ndarray, light: float, rng: np.random.Generator) -> np.ndarray:
    """The frame in `light` times the light at the same exposure (gamma 2.2), with a little sensor noise."""
    linear = (frame / 255.0) ** 2.2 * light + rng.normal(0, 0.002, frame.shape)
    out: np.ndarray = np.rint(255 * np.clip(linear, 0, 1) ** (1 / 2.2)).astype(np.uint8)
    return out


def test_luma_is_the_mean_rec601_luma() -> None:
    frame = np.zeros((128, 128, 3), np.uint8)
    frame[:64] = (255, 0, 0)
    frame[64:] = (0, 0, 255)
    assert luma(frame) == pytest.approx((0.299 * 255 + 0.114 * 255) / 2)


def test_a_subject_filling_the_view_for_seconds_is_no_light_change() -> None:
    vote = LightVote(TRAINED)
    # A black car fills the crop at NEED - 1 checks of every CHECKS, again and again: never a majority.
    pattern = [20.0] * (NEED - 1) + [100.0] * (CHECKS - NEED + 1)
    assert not any(vote.add(b) for b in pattern * 10)
    assert vote.state == "as trained"
    # Just inside the margins stays as trained: x1.5 below the range, x1.25 above it.
    assert not any(vote.add(b) for b in [TRAINED.lo / 1.49, TRAINED.hi * 1.24] * CHECKS)


def test_a_lasting_change_is_voted_once_each_way() -> None:
    vote = LightVote(TRAINED)
    changes = [vote.state for b in [100.0] * 20 + [40.0] * 30 + [100.0] * 30 + [250.0] * 30 if vote.add(b)]
    assert changes == ["dark", "as trained", "bright"]


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("bright", r"must be two numbers \[lo, hi\], got 'bright'"),
        ([80], r"must be two numbers \[lo, hi\], got \[80\]"),
        ([80, None], r"must be two numbers \[lo, hi\], got \[80, None\]"),
        ([120, 80], r"must be 0 <= lo <= hi <= 255 \(brightness, mean luma\), got \[120, 80\]"),
        ([-1, 300], r"must be 0 <= lo <= hi <= 255"),
    ],
)
def test_a_bad_light_range_is_one_clear_error_naming_the_manifest_and_key(tmp_path: Path, shared: Path, value: object, why: str) -> None:
    model = tmp_path / "m.tflite"
    shutil.copy(paths.default_model(), model)
    data = json.loads(manifest_path(paths.default_model()).read_text())
    assert "light_range" not in data  # the stock model records no training light: no check
    manifest_path(model).write_text(json.dumps({**data, "light_range": value}))
    with pytest.raises(ModelError, match=r"^\S*m\.tflite\.json: light_range " + why) as err:
        load_manifest(model)
    assert "\n" not in str(err.value) and "re-run `mnv1-edge" in str(err.value)


def test_light_range_round_trips_and_stays_out_of_older_manifests(shared: Path) -> None:
    stock = load_manifest(paths.default_model())
    assert stock.light_range is None and stock.trained_light() is None and "light_range" not in stock.to_json()
    data = json.loads(stock.to_json())
    for given in ((np.float64(61.25), np.float64(140.5)), [61.25, 140.5]):  # train passes a tuple; JSON gives a list
        made = replace(stock, light_range=given)
        again = Manifest.from_dict(json.loads(made.to_json()), "m.json")
        assert json.loads(made.to_json())["light_range"] == [61.25, 140.5] and again.trained_light() == LightRange(61.25, 140.5)
        assert again.problem() == "" and {**data, "light_range": [61.25, 140.5]} == json.loads(again.to_json())


def test_the_daemon_says_once_when_frames_leave_the_trained_light_and_once_when_they_return(tmp_path: Path, shared: Path) -> None:
    """A real `mnv1-edge run` on an image folder: lit frames, frames in 1/8 of the light, lit again."""
    rng = np.random.default_rng(0)
    with Image.open(shared / "data" / "samples" / "owl.jpg") as img:
        lit = np.asarray(img.convert("RGB").resize((128, 128), Image.Resampling.BILINEAR)).astype(np.float64)
    frames = [np.clip(lit * rng.uniform(0.9, 1.1) + rng.normal(0, 2, lit.shape), 0, 255).astype(np.uint8) for _ in range(60)]
    lo, hi = np.percentile([luma(f) for f in frames], (5, 95))
    frames[15:40] = [dimmed(f.astype(np.float64), 0.125, rng) for f in frames[15:40]]  # the light goes off for 25 frames
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{i:03d}.png")
    model = tmp_path / "m.tflite"
    shutil.copy(paths.default_model(), model)
    data = json.loads(manifest_path(paths.default_model()).read_text())
    manifest_path(model).write_text(json.dumps({**data, "light_range": [round(lo, 1), round(hi, 1)]}))
    config = write_config(
        tmp_path / "c.toml",
        {
            "state_dir": str(tmp_path / "state"),
            "stats_interval_s": 0.2,
            "model": {"path": str(model)},
            # light_check_s = 0: every frame is a check, so the vote counts frames; 20 fps: stats lines while it is dark.
            "source": {"kind": "images", "light_check_s": 0, "max_fps": 20.0, "images": {"path": str(folder)}},
            "results": {"smoothing": "none", "publish": "every"},
            "sinks": {"file": {"path": str(tmp_path / "results.jsonl"), "fsync": "never"}},
        },
    )
    run = subprocess.run([EXE, "run", "--config", str(config)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    dark = "the frames are darker than any light the model was trained in"
    assert run.stderr.count(dark) == 1 and run.stderr.count("the light is back within what the model was trained in") == 1, run.stderr
    assert run.stderr.index(dark) < run.stderr.index("the light is back"), run.stderr
    assert f"trained {lo:.0f}-{hi:.0f}); its answers may be wrong: capture frames in this light and train again" in run.stderr
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 60  # every frame still classified
    # The stats: light_off 1 while dark, with the frames' brightness; at the end back to 0, one change counted.
    sources = [ast.literal_eval(m) for m in re.findall(r"source (\{.*?\})", run.stderr)]  # the journal line's dict, as logged
    assert any(s.get("light_off") == 1 and s["light_luma"] * 1.5 < lo for s in sources), sources
    assert sources[-1]["light_off"] == 0 and sources[-1]["light_changed"] == 1 and sources[-1]["light_luma"] >= lo / 1.5, sources[-1]


def test_the_benchmark_times_a_switched_light_as_the_daemon_votes() -> None:
    """benchmarks/light_check.py's replay (the figures in docs/design/light-check.md): 10 of 12 checks 2 s apart."""
    from benchmarks.light_check import replay

    result = replay(lambda t: 40.0 if 30 <= t < 120 else 100.0, TRAINED, 180.0, 25.0)
    assert len(result.changes) == 50 and result.count == 2  # each phase of the check period: flagged once, cleared once
    flagged, cleared = result.first("dark", 30.0), result.first("as trained", 120.0)
    assert flagged is not None and cleared is not None and 18 <= flagged <= 20 and 18 <= cleared <= 20
    assert replay(lambda t: 40.0 if 30 <= t < 45 else 100.0, TRAINED, 180.0, 25.0).count == 0  # 15 s of dark: no change


def test_a_model_with_a_training_light_is_announced_to_home_assistant(tmp_path: Path, shared: Path) -> None:
    """The pipeline hands the check to the MQTT sink (its discovery names the light sensor) and the guard to the source."""
    from edge.config import parse
    from edge.daemon.pipeline import FramePipeline
    from edge.daemon.sequence import RecordSequence
    from edge.sources import make_source

    model = tmp_path / "m.tflite"
    shutil.copy(paths.default_model(), model)
    data = json.loads(manifest_path(paths.default_model()).read_text())
    manifest_path(model).write_text(json.dumps({**data, "light_range": [88.0, 113.0]}))
    # Port 1: nothing listens there, so nothing is announced to a broker another test may run.
    mqtt = {"enabled": True, "port": 1, "spool": {"path": str(tmp_path / "spool")}, "homeassistant": {"enabled": True}}
    for check_s, announced in ((2.0, True), (-1.0, False)):
        config = parse(
            {
                "device_id": "cam",
                "state_dir": str(tmp_path / "state"),
                "model": {"path": str(model)},
                "source": {"kind": "synthetic", "light_check_s": check_s},
                "sinks": {"file": {"enabled": False}, "mqtt": mqtt},
            }
        )
        seq = RecordSequence(tmp_path / "state")
        pipeline = FramePipeline(config, seq)
        pipeline.open_sinks(None)  # no broker listens: the sink keeps trying in its thread until closed
        try:
            topics = [topic for topic, _ in pipeline.sinks.sinks[0].discovery.messages]  # type: ignore[attr-defined]
        finally:
            pipeline.close()
            seq.close()
        assert ("homeassistant/binary_sensor/mnv1_edge_cam/light_changed/config" in topics) is announced
        assert (make_source(pipeline.source_spec).stats().light_off == 0) is announced  # the guard, off when light_check_s < 0
