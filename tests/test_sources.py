"""Sources on real inputs: images with a corrupt file, generated (and damaged) videos, HTTP streams, synthetic frames, v4l2 errors."""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edge.config import ImagesSourceConfig, SourceConfig, SyntheticSourceConfig, V4l2SourceConfig, VideoSourceConfig
from edge.errors import SourceError
from edge.model.preprocess import load_image
from edge.sources import SourceSpec, make_source
from edge.sources.frozen import FrozenGuard
from edge.sources.images import ImagesSource
from edge.sources.synthetic import SyntheticSource
from edge.sources.v4l2 import V4l2Source
from edge.sources.video import VideoSource

FRAMES = 12
COLOURS = [(220, 40, 40), (40, 200, 60), (30, 60, 210)]


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 12-frame 320x240 MPEG-4 clip written with PyAV: 4 frames each of red, green, blue."""
    return write_clip(tmp_path_factory.mktemp("video") / "clip.mp4")


def write_clip(path: Path) -> Path:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for i in range(FRAMES):
            img = np.zeros((240, 320, 3), np.uint8)
            img[:] = COLOURS[i // 4]
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _close_colour(pixels: np.ndarray, colour: tuple[int, int, int]) -> bool:
    return bool(np.abs(pixels.reshape(-1, 3).mean(axis=0) - colour).max() < 12)


def test_images_folder_skips_a_corrupt_file_and_goes_on(shared: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for name in ("bird.bmp", "owl.jpg", "parrot.jpg"):
        shutil.copy(shared / "data" / "samples" / name, tmp_path / name)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (tmp_path / "notes.txt").write_text("not an image")
    source = ImagesSource(ImagesSourceConfig(path=str(tmp_path)))
    source.open()
    frames = []
    while (frame := source.read()) is not None:
        frames.append(frame)
    assert [f.origin for f in frames] == ["bird.bmp", "owl.jpg", "parrot.jpg"]
    assert np.array_equal(frames[2].pixels, load_image(tmp_path / "parrot.jpg"))
    assert source.stats().to_dict() == {"read": 3, "skipped": 1, "passes": 1}
    assert "skipped unreadable image" in caplog.text and "broken.jpg" in caplog.text


def test_images_glob_loops(shared: Path) -> None:
    source = ImagesSource(ImagesSourceConfig(path=str(shared / "data" / "samples" / "*.jpg"), loop=True))
    source.open()
    origins = [source.read().origin for _ in range(9)]  # type: ignore[union-attr]
    assert origins[:4] == ["cat_720p.jpg", "hot_dog.jpg", "owl.jpg", "parrot.jpg"] and origins[4:8] == origins[:4]
    assert source.stats().passes == 3


def test_images_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"source.images.path: no images in"):
        ImagesSource(ImagesSourceConfig(path=str(tmp_path))).open()
    with pytest.raises(SourceError, match=r"source.images.path: .* is not a folder"):
        ImagesSource(ImagesSourceConfig(path=str(tmp_path / "missing"))).open()
    (tmp_path / "bad.png").write_bytes(b"garbage")
    looping = ImagesSource(ImagesSourceConfig(path=str(tmp_path), loop=True))
    looping.open()
    with pytest.raises(SourceError, match="no readable image"):
        looping.read()  # a loop over nothing readable fails instead of spinning


def test_synthetic_is_deterministic_and_finite() -> None:
    a, b = SyntheticSource(SyntheticSourceConfig(frames=5, seed=7)), SyntheticSource(SyntheticSourceConfig(frames=5, seed=7))
    a.open()
    b.open()
    fa, fb = [a.read() for _ in range(5)], [b.read() for _ in range(5)]
    assert all(x is not None and y is not None and np.array_equal(x.pixels, y.pixels) for x, y in zip(fa, fb, strict=True))
    assert fa[0] is not None and fa[0].pixels.shape == (128, 128, 3) and fa[0].pixels.dtype == np.uint8
    assert a.read() is None and not a.live


def test_video_file_reads_every_frame_then_ends(video: Path) -> None:
    source = make_source(SourceSpec(SourceConfig(kind="video", video=VideoSourceConfig(url=str(video)))))
    assert isinstance(source, VideoSource) and not source.live
    source.open()
    frames = []
    while (frame := source.read()) is not None:
        frames.append(frame.pixels)
    source.close()
    assert len(frames) == FRAMES and frames[0].shape == (128, 128, 3)
    assert _close_colour(frames[0], COLOURS[0]) and _close_colour(frames[5], COLOURS[1]) and _close_colour(frames[-1], COLOURS[2])


def test_video_file_loops(video: Path) -> None:
    source = VideoSource(VideoSourceConfig(url=str(video), loop=True))
    source.open()
    frames = [source.read() for _ in range(FRAMES + 3)]
    source.close()
    assert all(f is not None for f in frames)
    assert frames[FRAMES] is not None and _close_colour(frames[FRAMES].pixels, COLOURS[0])


def test_missing_video_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"source.video.url: .* is not a file"):
        VideoSource(VideoSourceConfig(url=str(tmp_path / "none.mp4"))).open()


def damaged(video: Path, directory: Path, how: str) -> Path:
    """A copy of the clip with its second half corrupted (MPEG-4 frame start codes overwritten:
    FFmpeg's decoder rejects those packets), or written as MPEG-TS and cut off mid-stream (as a
    recording is by a power cut; an MP4 has its index at the end and would not open at all)."""
    if how == "truncated":
        path = write_clip(directory / "truncated.ts")
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        return path
    path = directory / "corrupted.mp4"
    data = bytearray(video.read_bytes())
    starts = [m.start() for m in re.finditer(rb"\x00\x00\x01\xb6", bytes(data))]
    assert len(starts) == FRAMES
    for start in starts[FRAMES // 2 :]:
        data[start : start + 4] = b"\xff\xff\xff\xff"
    path.write_bytes(bytes(data))
    return path


def test_a_corrupted_video_file_skips_the_damaged_packets_without_repeating_frames(
    video: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = VideoSource(VideoSourceConfig(url=str(damaged(video, tmp_path, "corrupted")), reconnect_max_s=0.05))
    source.open()
    frames: list[np.ndarray] = []
    while (frame := source.read()) is not None and len(frames) <= FRAMES:
        frames.append(frame.pixels)
    source.close()
    assert len(frames) == 6 and _close_colour(frames[3], COLOURS[0]) and _close_colour(frames[5], COLOURS[1])
    damaged_packets = source.stats().damaged
    assert 4 <= damaged_packets <= 6  # the decoder's threads may fold one bad packet's error into the next
    # Logged once per back-off step (1st, 2nd, 4th), not once per packet.
    assert [r.getMessage().rpartition("; ")[2] for r in caplog.records if "damaged packet" in r.getMessage()] == [
        "1 skipped so far",
        "2 skipped so far",
        "4 skipped so far",
    ]


def test_a_video_file_with_nothing_decodable_fails_clearly(video: Path, tmp_path: Path) -> None:
    path = tmp_path / "all-damaged.mp4"
    data = bytearray(video.read_bytes())
    for m in re.finditer(rb"\x00\x00\x01\xb6", bytes(data)):
        data[m.start() : m.start() + 4] = b"\xff\xff\xff\xff"
    path.write_bytes(bytes(data))
    source = VideoSource(VideoSourceConfig(url=str(path)))
    source.open()
    with pytest.raises(SourceError, match=r"all-damaged\.mp4: no frame could be decoded \(1\d damaged packets skipped\); the file is damaged"):
        source.read()


def test_a_truncated_video_file_ends_without_repeating_frames(video: Path, tmp_path: Path) -> None:
    source = VideoSource(VideoSourceConfig(url=str(damaged(video, tmp_path, "truncated")), reconnect_max_s=0.05))
    source.open()
    frames: list[np.ndarray] = []
    while (frame := source.read()) is not None and len(frames) <= FRAMES:
        frames.append(frame.pixels)
    source.close()
    assert 0 < len(frames) < FRAMES and _close_colour(frames[0], COLOURS[0])
    order = [next(i for i, c in enumerate(COLOURS) if _close_colour(f, c)) for f in frames]
    assert order == sorted(order)  # never back to the first frame


def test_a_looping_file_that_disappears_is_retried_with_back_off(video: Path, tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    shutil.copy(video, clip)
    source = VideoSource(VideoSourceConfig(url=str(clip), loop=True, reconnect_max_s=0.05))
    source.open()
    assert all(source.read() is not None for _ in range(FRAMES))
    clip.unlink()  # the restart at the end of the pass fails
    timer = threading.Timer(0.5, source.interrupt)
    timer.start()
    assert source.read() is None  # retried (not a traceback) until interrupted
    assert source.stats().reconnects >= 2
    source.close()


@pytest.fixture
def http_server(video: Path) -> Iterator[str]:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(video.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.RequestHandlerClass.log_message = lambda *a: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{video.name}"
    server.shutdown()
    server.server_close()


def test_http_stream_reconnects_when_it_ends(http_server: str) -> None:
    source = VideoSource(VideoSourceConfig(url=http_server, reconnect_max_s=0.2))
    assert source.live
    source.open()
    frames = [source.read() for _ in range(FRAMES + 2)]
    assert all(f is not None for f in frames)
    assert source.stats().reconnects >= 1
    source.interrupt()
    assert source.read() is None  # interrupted: returns at once instead of decoding on
    source.close()


def test_http_stream_down_keeps_retrying_until_interrupted() -> None:
    source = VideoSource(VideoSourceConfig(url="http://127.0.0.1:9/none.mp4", reconnect_max_s=0.05))
    source.open()  # a live source that is down at start does not fail: it retries
    timer = threading.Timer(0.5, source.interrupt)
    timer.start()
    assert source.read() is None
    assert source.stats().reconnects >= 2


def test_v4l2_missing_device_names_the_key() -> None:
    guard = make_source(SourceSpec(SourceConfig(kind="v4l2", v4l2=V4l2SourceConfig(device="/dev/video-none"))))
    assert isinstance(guard, FrozenGuard) and guard.live
    source = guard.source
    assert isinstance(source, V4l2Source)
    assert source.framerate == 15.0
    with pytest.raises(SourceError, match=r"source.v4l2.device: /dev/video-none does not exist"):
        source.open()
