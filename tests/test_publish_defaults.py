"""The default `[results]` on a shaky, noisy fixed-camera video: a record on a change of the voted
label or the heartbeat, not one per frame (what `publish = "every"` writes)."""

from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path

import pytest

from edge import paths
from tests.support.daemon import EXE, write_config
from tests.support.shaky_video import write_video


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory, shared: Path) -> Path:
    """20 s at 10 fps: a clear scene (the parrot), then one where the model hesitates between cats."""
    out = tmp_path_factory.mktemp("video") / "cam.mp4"
    samples = paths.sample_images()
    assert write_video(out, [samples / "parrot.jpg", samples / "cat_720p.jpg"], frames_each=100) == 200
    return out


def run(tmp_path: Path, model: Path, video: Path, results: dict[str, object]) -> list[dict[str, object]]:
    data = {
        "state_dir": str(tmp_path / "state"),
        "model": {"path": str(model)},
        "source": {"kind": "video", "video": {"url": str(video)}},
        "sinks": {"file": {"path": str(tmp_path / "results.jsonl")}},
    }
    if results:
        data["results"] = results
    tmp_path.mkdir()
    config = write_config(tmp_path / "c.toml", data)
    done = subprocess.run([EXE, "run", "--config", str(config)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "200 frames classified" in done.stderr, done.stderr
    return [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_the_defaults_write_a_record_per_change_not_per_frame(tmp_path: Path, reference_model: Path, video: Path) -> None:
    every = run(tmp_path / "every", reference_model, video, {"publish": "every", "smoothing": "none"})
    assert len(every) == 200
    top1 = [r["top_k"][0]["class_index"] for r in every]  # type: ignore[index]
    flips = sum(1 for a, b in itertools.pairwise(top1) if a != b)
    assert flips >= 10, "the input no longer makes the top-1 flicker; the test proves nothing"
    defaults = run(tmp_path / "defaults", reference_model, video, {})
    labels = [r["top_k"][0]["label"] for r in defaults]  # type: ignore[index]
    assert 2 <= len(defaults) <= flips // 2, labels  # the first record, the scene change, few flickers
    assert labels[0] == "macaw" and labels[-1] != "macaw"
    assert [r["seq"] for r in defaults] == list(range(len(defaults)))
