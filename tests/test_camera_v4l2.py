"""Webcams and MJPEG cameras: the capture mode chosen, MJPEG lowres decoding, and streams that stall or
freeze (a real MJPEG-over-HTTP camera on loopback, tests/system/mjpeg_server.py) recovering by reopening."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.config import SourceConfig, V4l2SourceConfig, VideoSourceConfig
from edge.model.preprocess import STOCK_CROP
from edge.model.region import Crop
from edge.sources import SourceSpec, make_source
from edge.sources.v4l2 import V4l2Source
from edge.sources.v4l2_caps import Mode, choose_mode, device_fd, wait_readable

SERVER = Path(__file__).parent / "system" / "mjpeg_server.py"
WEBCAM = {"yuyv422": [(640, 480), (160, 120), (320, 240), (1280, 720)], "mjpeg": [(1280, 720), (640, 480)]}


def test_the_smallest_native_size_covering_the_crop_is_chosen() -> None:
    assert choose_mode(WEBCAM, STOCK_CROP.need(128)) == Mode("yuyv422", 320, 240)  # 160x120 would need upscaling
    assert choose_mode({"mjpeg": [(1280, 720), (1920, 1080)]}, STOCK_CROP.need(128)) == Mode("mjpeg", 1280, 720, lowres=2)  # 320x180 >= 147
    assert choose_mode(WEBCAM, STOCK_CROP.need(128), wanted="mjpeg") == Mode("mjpeg", 640, 480, lowres=1)
    assert choose_mode({"mjpeg": [(160, 120)]}, STOCK_CROP.need(128)) is None
    # Each axis needs its own: a region half the width needs twice the width (293 px), not twice the height too.
    assert choose_mode(WEBCAM, Crop((0.0, 0.0, 0.5, 1.0), 0.875).need(128)) == Mode("yuyv422", 320, 240)


def test_capture_options_and_rate_cap() -> None:
    source = V4l2Source(V4l2SourceConfig(framerate=30.0), max_fps=5.0)
    assert source.framerate == 5.0
    assert source.options_for(Mode("yuyv422", 320, 240), 5.0) == {"framerate": "5", "video_size": "320x240", "input_format": "yuyv422"}
    assert source.options_for(None, 15.0) == {"framerate": "15"}


def test_a_device_that_stops_delivering_times_out(tmp_path: Path) -> None:
    path = tmp_path / "video0"
    path.write_bytes(b"")
    fd = os.open(path, os.O_RDONLY)
    try:
        assert device_fd(str(path)) == fd  # found as FFmpeg's descriptor would be
    finally:
        os.close(fd)
    r, w = os.pipe()
    try:
        assert not wait_readable(r, 0.05)  # nothing arrives: the read that would block is never made
        os.write(w, b"x")
        assert wait_readable(r, 0.05)
    finally:
        os.close(r)
        os.close(w)


def test_mjpeg_lowres_decodes_at_reduced_scale(shared: Path, tmp_path: Path) -> None:
    import av

    jpeg = shared / "data" / "samples" / "cat_720p.jpg"
    source = V4l2Source(V4l2SourceConfig())
    source.mode = Mode("mjpeg", 1280, 720, lowres=2)
    with av.open(str(jpeg)) as container:
        stream = container.streams.video[0]
        source._configure_decoder(stream)
        frame = next(container.decode(stream))
    assert (frame.width, frame.height) == (320, 180)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def camera(shared: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[str, Path]]:
    """An MJPEG IP camera on loopback; touching the returned path makes it hang without disconnecting."""
    port, stall = _free_port(), tmp_path / "stall"
    samples = shared / "data" / "samples"
    jpegs = [samples / "parrot.jpg"] if getattr(request, "param", "") == "frozen" else [samples / "parrot.jpg", samples / "cat_720p.jpg"]
    proc = subprocess.Popen([sys.executable, str(SERVER), "--port", str(port), "--stall", str(stall), "--fps", "20", *map(str, jpegs)])
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/", stall
    finally:
        proc.kill()
        proc.wait()


def test_a_hung_stream_reconnects_within_the_stall_timeout(camera: tuple[str, Path]) -> None:
    url, stall = camera
    source = make_source(SourceSpec(SourceConfig(kind="video", stall_timeout_s=1.0, video=VideoSourceConfig(url=url, reconnect_max_s=0.1))))
    source.open()
    assert source.read() is not None
    stall.touch()  # the camera keeps the connection open and sends nothing
    timer = threading.Timer(1.5, stall.unlink)
    timer.start()
    # Frames the decoder buffered before the stall still come first (more of them on a loaded
    # machine, where the camera ran ahead of the reader): read through them to the reconnect.
    t0 = time.monotonic()
    while source.stats().reconnects == 0 and time.monotonic() - t0 < 15.0:
        frame = source.read()
        assert frame is not None
    assert source.stats().errors >= 1 and source.stats().reconnects >= 1
    assert source.read() is not None  # the camera is back: frames flow again
    source.close()


@pytest.mark.slow
@pytest.mark.parametrize("camera", ["frozen"], indirect=True)
def test_a_stream_repeating_one_picture_is_frozen_and_reopened(camera: tuple[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    url, _ = camera
    source = make_source(SourceSpec(SourceConfig(kind="video", stall_timeout_s=0.5, video=VideoSourceConfig(url=url, reconnect_max_s=0.05))))
    source.open()
    passed = 0
    timer = threading.Timer(3.0, source.interrupt)
    timer.start()
    while source.read() is not None:  # identical frames pass for stall_timeout_s, then are withheld
        passed += 1
    stats = source.stats()
    assert passed >= 1 and stats.frozen == 1 and stats.frozen_reopens >= 2 and stats.reconnects >= 2
    assert caplog.text.count("frozen; reopening it") == 1  # logged once, however often it is reopened
    source.close()
