"""The picamera2 source against a fake Picamera2 (YUV420 with stride padding, RGB888 on Pi 5)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from edge.config import Picamera2SourceConfig
from edge.errors import SourceError
from edge.model.preprocess import load_image, prepare_array
from edge.sources.picamera2 import Picamera2Source, Yuv420ToRgb
from tests.support import fake_picamera2 as fake


@pytest.fixture
def scene(shared: Path) -> np.ndarray:
    return load_image(shared / "data" / "samples" / "parrot.jpg", size=256, fraction=1.0)


def _expected(scene: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    lores = np.asarray(Image.fromarray(scene).resize(size, Image.Resampling.BILINEAR))
    return prepare_array(lores, 128, 0.875)


def test_yuv420_conversion_honours_the_stride_and_reuses_its_buffer() -> None:
    rgb = np.zeros((4, 8, 3), np.uint8)
    rgb[:, :4] = (200, 30, 40)  # colour edges on chroma-block boundaries: exact up to rounding
    rgb[:, 4:] = (20, 180, 90)
    conv = Yuv420ToRgb(8, 4, 64)
    out = conv(fake.rgb_to_i420(rgb, 64))
    assert np.abs(out.astype(int) - rgb).max() <= 2
    assert conv(fake.rgb_to_i420(rgb[::-1].copy(), 64)) is out  # the same preallocated buffer


def test_yuv420_lores_frames_match_the_scene(monkeypatch: pytest.MonkeyPatch, scene: np.ndarray) -> None:
    camera = fake.FakeCamera(scene)
    fake.install(monkeypatch, camera)
    config = Picamera2SourceConfig(lores_size=(160, 120), framerate=5.0, exposure_time_us=10000, analogue_gain=2.0)
    source = Picamera2Source(config)
    source.open()
    frame = source.read()
    assert frame is not None and frame.pixels.shape == (128, 128, 3) and frame.pixels.dtype == np.uint8
    lores = camera.configs[0]["lores"]
    assert lores["format"] == "YUV420" and lores["stride"] == 192 > 160  # padding really present
    diff = np.abs(frame.pixels.astype(int) - _expected(scene, (160, 120)))
    assert diff.mean() < 4, diff.mean()  # 4:2:0 chroma loses a little colour detail, nothing more
    assert camera.controls == {"FrameRate": 5.0, "ExposureTime": 10000, "AeEnable": False, "AnalogueGain": 2.0}
    source.close()
    assert camera.closed == 1


def test_pi5_reads_rgb888_lores_in_bgr_order(monkeypatch: pytest.MonkeyPatch, scene: np.ndarray) -> None:
    camera = fake.FakeCamera(scene, platform=fake.Platform.PISP)
    fake.install(monkeypatch, camera)
    source = Picamera2Source(Picamera2SourceConfig(lores_size=(160, 128)))
    source.open()
    frame = source.read()
    assert camera.configs[0]["lores"]["format"] == "RGB888"
    assert frame is not None
    assert np.array_equal(frame.pixels, _expected(scene, (160, 128)))
    source.close()


def test_rgb888_on_a_pi4_is_a_config_error(monkeypatch: pytest.MonkeyPatch, scene: np.ndarray) -> None:
    fake.install(monkeypatch, fake.FakeCamera(scene))
    with pytest.raises(SourceError, match=r"source.picamera2.lores_format"):
        Picamera2Source(Picamera2SourceConfig(lores_format="RGB888")).open()


def test_camera_errors_reopen_with_backoff(monkeypatch: pytest.MonkeyPatch, scene: np.ndarray, caplog: pytest.LogCaptureFixture) -> None:
    camera = fake.FakeCamera(scene)
    fake.install(monkeypatch, camera)
    source = Picamera2Source(Picamera2SourceConfig(lores_size=(160, 120), reopen_max_s=0.05))
    source.open()
    camera.fail_captures = 1
    camera.fail_opens = 1  # the first reopen fails too
    frame = source.read()
    assert frame is not None
    assert source.stats() == {"read": 1, "reopens": 2, "errors": 1}
    assert camera.opened == 2 and camera.closed == 1
    assert "capture failed (Camera frontend has timed out!)" in caplog.text
    source.interrupt()
    camera.fail_captures = 1
    assert source.read() is None  # interrupted: no reopen loop while stopping
    source.close()


def test_without_picamera2_the_error_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)
    with pytest.raises(SourceError, match=r"apt install python3-picamera2.*--system-site-packages"):
        Picamera2Source(Picamera2SourceConfig()).open()
