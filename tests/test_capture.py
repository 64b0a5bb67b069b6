"""`mnv1-edge capture`: real subprocesses on an images source; the service's lock is a clear error, never a hang."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from edge import paths

REPO = Path(__file__).resolve().parent.parent


def config(tmp_path: Path, source: list[str]) -> Path:
    path = tmp_path / "config.toml"
    lines = [f'state_dir = "{tmp_path / "state"}"', "[model]", 'path = "unused.tflite"', "[source]", *source, "[sinks.stdout]", "enabled = true"]
    path.write_text("\n".join(lines) + "\n")
    (tmp_path / "state").mkdir(exist_ok=True)
    return path


def capture(cfg: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    # Run through a wrapper that reports whether TensorFlow got imported: capture runs on devices.
    code = "import sys; from edge.cli import main; rc = main(sys.argv[1:]); print('TF' if 'tensorflow' in sys.modules else 'noTF'); sys.exit(rc)"
    cmd = [sys.executable, "-c", code, "capture", "--config", str(cfg), "--out", str(out), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, env=os.environ | {"PYTHONPATH": str(REPO)}, timeout=60)


def images_source() -> list[str]:
    return ['kind = "images"', "[source.images]", f'path = "{paths.sample_images()}"']


def test_saves_time_sorted_model_input_jpegs_without_tensorflow(shared: Path, tmp_path: Path) -> None:
    out = tmp_path / "frames"
    proc = capture(config(tmp_path, images_source()), out, "--every", "0", "--count", "4")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("noTF") and "saved 4 frames" in proc.stdout
    jpegs = sorted(out.glob("*.jpg"))
    assert len(jpegs) == 4
    assert [p.name for p in jpegs] == sorted(p.name for p in jpegs)  # names are UTC times: they sort as captured
    for p in jpegs:
        with Image.open(p) as img:
            assert img.format == "JPEG" and img.size == (128, 128)
    info = json.loads((out / "capture.json").read_text())
    assert info["source"] == "images" and info["crop_fraction"] == 1.0 and info["roi"] == [0.0, 0.0, 1.0, 1.0]  # the region, uncropped


def test_a_finite_source_ends_early(shared: Path, tmp_path: Path) -> None:
    out = tmp_path / "frames"
    proc = capture(config(tmp_path, images_source()), out, "--every", "0", "--count", "1000")
    assert proc.returncode == 0, proc.stderr
    from edge.model.preprocess import list_images

    assert len(list(out.glob("*.jpg"))) == len(list_images(paths.sample_images()))


@pytest.mark.slow
def test_refuses_while_the_service_holds_its_lock(shared: Path, tmp_path: Path) -> None:
    cfg = config(tmp_path, images_source())
    lock = tmp_path / "state" / "lock"
    lock.touch()
    with open(lock) as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as the daemon holds it
        proc = capture(cfg, tmp_path / "frames", "--count", "2")
    assert proc.returncode == 69
    assert "the service is running" in proc.stderr and "systemctl stop mnv1-edge" in proc.stderr
    assert proc.stderr.strip().count("\n") == 0
    assert not (tmp_path / "frames").exists()  # refused before anything was written
    # Released: a stale lock file from a stopped service does not block.
    proc = capture(cfg, tmp_path / "frames", "--every", "0", "--count", "1")
    assert proc.returncode == 0, proc.stderr


def test_missing_camera_is_one_line(tmp_path: Path) -> None:
    cfg = config(tmp_path, ['kind = "v4l2"', "[source.v4l2]", 'device = "/dev/video-missing"'])
    proc = capture(cfg, tmp_path / "frames", "--count", "1")
    assert proc.returncode == 69
    assert "/dev/video-missing does not exist" in proc.stderr and proc.stderr.strip().count("\n") == 0


def test_no_frame_from_a_live_source_is_an_error_not_a_hang(tmp_path: Path) -> None:
    """A live source whose frames never come (a camera held by another process) is interrupted."""
    from edge.commands import capture as cap
    from edge.config import load
    from edge.errors import SourceError

    cfg = load(config(tmp_path, images_source()))

    class Silent:
        name, live = "picamera2:0", True

        def __init__(self) -> None:
            import threading

            self.stop = threading.Event()

        def open(self) -> None: ...

        def read(self) -> None:
            self.stop.wait(30)  # blocks like a camera that delivers nothing, until interrupted
            return None

        def interrupt(self) -> None:
            self.stop.set()

        def close(self) -> None: ...

    import edge.sources

    original, timeout = edge.sources.make_source, cap.FIRST_FRAME_TIMEOUT_S
    edge.sources.make_source, cap.FIRST_FRAME_TIMEOUT_S = lambda _spec: Silent(), 0.5  # type: ignore[assignment,return-value]
    try:
        try:
            cap.capture(cfg, Path("c.toml"), tmp_path / "frames", 0.0, 3)
        except SourceError as exc:
            assert "no frame within" in str(exc) and "used by the service" in str(exc)
        else:
            raise AssertionError("capture returned without a frame")
    finally:
        edge.sources.make_source, cap.FIRST_FRAME_TIMEOUT_S = original, timeout
