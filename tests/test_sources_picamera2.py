"""The picamera2 source against the fake picamera2/libcamera (tests/support/fake_picamera2.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from edge.config import Picamera2SourceConfig, SourceConfig
from edge.errors import SourceError
from edge.model.preprocess import STOCK_CROP, load_image, prepare_array
from edge.model.region import FULL, NO_CROP, Crop, scaler_crop
from edge.sources import SourceSpec, make_source
from edge.sources.picamera2 import Picamera2Source
from edge.sources.yuv import AvYuv420ToRgb, Yuv420ToRgb, make_converter
from tests.support import fake_picamera2 as fake


@pytest.fixture
def scene(shared: Path) -> np.ndarray:
    return load_image(shared / "data" / "samples" / "parrot.jpg", NO_CROP, size=256)


def _expected(scene: np.ndarray) -> np.ndarray:
    """What the model should see: the same centre crop + bilinear resize as every image."""
    return prepare_array(scene, STOCK_CROP, 128)


def test_yuv420_converters_honour_the_stride_and_agree() -> None:
    rgb = np.zeros((4, 8, 3), np.uint8)
    rgb[:, :4] = (200, 30, 40)  # colour edges on chroma-block boundaries: exact up to rounding
    rgb[:, 4:] = (20, 180, 90)
    conv = Yuv420ToRgb(8, 4, 64)
    out = conv(fake.rgb_to_i420(rgb, 64))
    assert np.abs(out.astype(int) - rgb).max() <= 2
    assert conv(fake.rgb_to_i420(rgb[::-1].copy(), 64)) is out  # the same preallocated buffer
    import av

    swscale = AvYuv420ToRgb(8, 4, 64, av)(fake.rgb_to_i420(rgb, 64))
    assert np.abs(swscale.astype(int) - rgb).max() <= 2
    assert isinstance(make_converter(8, 4, 64), AvYuv420ToRgb)


def test_without_pyav_the_numpy_converter_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "av", None)
    assert isinstance(make_converter(128, 128, 128), Yuv420ToRgb)


@pytest.mark.parametrize("platform", [fake.Platform.VC4, fake.Platform.PISP])
def test_lores_is_the_model_input_cropped_by_the_isp(monkeypatch: pytest.MonkeyPatch, scene: np.ndarray, platform: fake.Platform) -> None:
    camera = fake.FakeCamera(scene, platform=platform)
    fake.install(monkeypatch, camera)
    source = Picamera2Source(Picamera2SourceConfig(framerate=5.0))
    source.open()
    frame = source.read()
    assert frame is not None and frame.pixels.shape == (128, 128, 3) and frame.pixels.dtype == np.uint8
    config = camera.configs[0]
    assert config["raw"] is None  # no full-size raw buffers allocated
    assert config["lores"]["size"] == (128, 128)
    crop = scaler_crop(FULL, (0, 0, 256, 256), (64, 64), fraction=0.875)
    sent = camera.started_with[0]
    if platform == fake.Platform.PISP:
        assert config["lores"]["format"] == "BGR888" and sent["ScalerCrops"] == [crop, crop]
        assert np.abs(frame.pixels.astype(int) - _expected(scene)).mean() < 1.0  # R,G,B as delivered, no flip
    else:
        assert config["lores"]["format"] == "YUV420" and sent["ScalerCrop"] == crop
        assert np.abs(frame.pixels.astype(int) - _expected(scene)).mean() < 5  # 4:2:0 chroma loses a little
    source.close()
    assert camera.closed == 1


@pytest.mark.parametrize("platform", [fake.Platform.VC4, fake.Platform.PISP])
def test_the_region_of_interest_is_cut_by_the_isp(monkeypatch: pytest.MonkeyPatch, scene: np.ndarray, platform: fake.Platform) -> None:
    roi = (0.5, 0.5, 0.5, 0.5)
    camera = fake.FakeCamera(scene, platform=platform)
    fake.install(monkeypatch, camera)
    source = Picamera2Source(Picamera2SourceConfig(framerate=5.0), Crop(roi, 0.875))
    source.open()
    frame = source.read()
    crop = scaler_crop(roi, (0, 0, 256, 256), (64, 64), fraction=0.875)
    sent = camera.started_with[0]
    assert (sent["ScalerCrops"] == [crop, crop]) if platform == fake.Platform.PISP else (sent["ScalerCrop"] == crop)
    # the lores frame is the region's centre crop, as a file of the same picture would be cut
    assert frame is not None and np.abs(frame.pixels.astype(int) - prepare_array(scene, Crop(roi, 0.875), 128)).mean() < 5
    source.close()


def test_exposure_without_gain_leaves_the_gain_automatic(monkeypatch: pytest.MonkeyPatch, scene: np.ndarray) -> None:
    camera = fake.FakeCamera(scene)
    fake.install(monkeypatch, camera)
    source = Picamera2Source(Picamera2SourceConfig(framerate=5.0, exposure_time_us=10000))
    source.open()
    sent = camera.started_with[0]
    assert "AeEnable" not in sent and sent["ExposureTimeMode"] == 1 and sent.get("AnalogueGainMode", 0) == 0
    assert sent["FrameDurationLimits"] == (200000, 200000)
    source.close()


@pytest.mark.parametrize(
    ("size", "platform", "stride"), [((160, 128), fake.Platform.VC4, 192), ((160, 128), fake.Platform.PISP, 256), ((32, 32), fake.Platform.VC4, 64)]
)
def test_other_lores_sizes_are_adjusted_and_resized(
    monkeypatch: pytest.MonkeyPatch, scene: np.ndarray, size: tuple[int, int], platform: fake.Platform, stride: int
) -> None:
    camera = fake.FakeCamera(scene, platform=platform)
    fake.install(monkeypatch, camera)
    source = Picamera2Source(Picamera2SourceConfig(lores_size=size, lores_format="YUV420"))
    source.open()
    frame = source.read()
    lores = camera.configs[0]["lores"]
    assert lores["stride"] == stride  # Pi 5: 2 * align(160 / 2, 64); Pi 4 ISP: >= 64x64, aligned to 64
    assert lores["size"][0] >= 64 if platform == fake.Platform.VC4 else True
    assert frame is not None and frame.pixels.shape == (128, 128, 3)
    source.close()


def test_a_limited_range_colour_space_is_refused(monkeypatch: pytest.MonkeyPatch, scene: np.ndarray) -> None:
    camera = fake.FakeCamera(scene)
    camera.lores_colour_space = fake.ColorSpace.Smpte170m()
    fake.install(monkeypatch, camera)
    with pytest.raises(SourceError, match=r"Rec601 Limited range, not sYCC"):
        Picamera2Source(Picamera2SourceConfig()).open()
    assert camera.closed == 1


def test_rgb_lores_on_a_pi4_is_a_config_error(monkeypatch: pytest.MonkeyPatch, scene: np.ndarray) -> None:
    fake.install(monkeypatch, fake.FakeCamera(scene))
    with pytest.raises(SourceError, match=r"source.picamera2.lores_format"):
        Picamera2Source(Picamera2SourceConfig(lores_format="BGR888")).open()


def test_a_missing_camera_names_the_key(monkeypatch: pytest.MonkeyPatch, scene: np.ndarray) -> None:
    fake.install(monkeypatch, fake.FakeCamera(scene, cameras=1))
    with pytest.raises(SourceError, match=r"source.picamera2.camera: there is no camera 1"):
        Picamera2Source(Picamera2SourceConfig(camera=1)).open()


def test_an_unadvertised_control_names_the_key(monkeypatch: pytest.MonkeyPatch, scene: np.ndarray) -> None:
    class NoGain(fake.FakeCamera):
        def advertised(self) -> dict[str, object]:
            return {k: v for k, v in super().advertised().items() if k != "AnalogueGain"}

    camera = NoGain(scene)
    fake.install(monkeypatch, camera)
    with pytest.raises(SourceError, match=r"source.picamera2.analogue_gain: this camera has no AnalogueGain control"):
        Picamera2Source(Picamera2SourceConfig(analogue_gain=2.0)).open()


def test_cancelled_requests_time_out_and_reopen_within_the_stall_timeout(
    monkeypatch: pytest.MonkeyPatch, scene: np.ndarray, caplog: pytest.LogCaptureFixture
) -> None:
    camera = fake.FakeCamera(scene)
    fake.install(monkeypatch, camera)
    source = Picamera2Source(Picamera2SourceConfig(reopen_max_s=0.05), stall_timeout_s=0.6)
    assert source.capture_wait_s == pytest.approx(0.2) and source.backoff.first_s == pytest.approx(0.05)
    source.open()
    camera.cancel_sessions = 1  # a frontend timeout: libcamera cancels every request of this session
    camera.fail_opens = 1  # and the first reopen fails too
    frame = source.read()
    assert frame is not None
    assert source.stats().to_dict() == {"read": 1, "reopens": 2, "errors": 1}
    assert camera.flushes == 1 and camera.opened == 2 and camera.closed == 1  # flushed before stop: no hang
    assert "capture failed (no frame within 0.2 s)" in caplog.text
    source.interrupt()
    assert source.read() is None  # interrupted: no reopen loop while stopping
    source.close()


def test_a_frozen_camera_is_reopened(monkeypatch: pytest.MonkeyPatch, scene: np.ndarray, caplog: pytest.LogCaptureFixture) -> None:
    camera = fake.FakeCamera(scene)
    camera.noise = 2.0
    fake.install(monkeypatch, camera)
    config = SourceConfig(kind="picamera2", stall_timeout_s=0.3, picamera2=Picamera2SourceConfig(reopen_max_s=0.05))
    source = make_source(SourceSpec(config, 0.875))
    source.open()
    for _ in range(3):
        assert source.read() is not None
    camera.frozen_sessions = 1  # the pipeline hangs on its last picture; a reopen cures it
    opened = camera.opened
    frame = source.read()  # identical frames are passed on for stall_timeout_s, then withheld
    while frame is not None and camera.opened == opened:
        frame = source.read()
    assert frame is not None and camera.opened == opened + 1
    stats = source.stats()
    assert stats.frozen == 1 and stats.frozen_reopens == 1 and stats.reopens == 1
    assert caplog.text.count("frozen; reopening it") == 1
    source.close()


def test_without_picamera2_the_error_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)
    with pytest.raises(SourceError, match=r"apt install python3-picamera2.*--system-site-packages"):
        Picamera2Source(Picamera2SourceConfig()).open()


@pytest.mark.parametrize("platform", [fake.Platform.VC4, fake.Platform.PISP])
def test_with_snapshots_on_the_view_is_the_main_stream_of_the_same_request(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, scene: np.ndarray, platform: fake.Platform
) -> None:
    from PIL import Image

    from edge.config import SnapshotsConfig
    from edge.daemon.snapshots import SnapshotWriter
    from edge.record import Record

    camera = fake.FakeCamera(scene, platform=platform)
    fake.install(monkeypatch, camera)
    source = make_source(SourceSpec(SourceConfig(kind="picamera2", picamera2=Picamera2SourceConfig(main_size=(640, 480))), 0.875, keep_still=True))
    source.open()
    config = camera.configs[0]
    assert config["main"]["format"] == "YUV420" and config["main"]["size"] == (480, 480)  # the lores aspect: not stretched
    writer = SnapshotWriter(SnapshotsConfig(enabled=True, path=str(tmp_path / "snap"), max_side=320))
    writer.open()
    try:
        frame = source.read()
        assert frame is not None and frame.still is not None
        name = writer.claim(True, 1, frame.ts, 0.0)
        assert name is not None
        writer.take(Record(1, frame.ts, frame.ts, "cam", frame.origin, (), 0.0, "", "bird", (), name), frame)
        for _ in range(5):  # the capture thread goes on overwriting the ring: the taken still was frozen
            assert source.read() is not None
        assert writer.flush()
    finally:
        writer.close()
        source.close()
    assert writer.counters["saved"] == 1 and writer.counters["view_errors"] == 0
    with Image.open(tmp_path / "snap" / name.replace(".jpg", "-view.jpg")) as image:
        view = np.asarray(image.convert("RGB"))
    assert view.shape == (320, 320, 3)  # larger than the 128 px input, bounded by max_side
    # The same centre crop the ISP made for the model, at the view's size: the scene, not noise or padding.
    assert np.abs(view.astype(int) - prepare_array(scene, STOCK_CROP, 320)).mean() < 6
    assert camera.made.count("main") == camera.made.count("lores") == 6  # both streams of every request
    assert source.stats().read == 6


def test_a_view_overwritten_before_it_was_taken_is_a_view_error(monkeypatch: pytest.MonkeyPatch, scene: np.ndarray) -> None:
    from edge.sources.mainstill import SLOTS

    fake.install(monkeypatch, fake.FakeCamera(scene))
    source = Picamera2Source(Picamera2SourceConfig(), keep_still=True)
    source.open()
    first = source.read()
    assert first is not None and first.still is not None
    assert first.still(200).size == (200, 200)  # still in the ring
    frozen = first.still.freeze()  # type: ignore[attr-defined]
    for _ in range(SLOTS):
        assert source.read() is not None
    with pytest.raises(SourceError, match="overwritten"):  # the writer counts it in snapshots_view_errors
        first.still(200)
    assert frozen(200).size == (200, 200)  # a frozen still has its own copy
    source.close()


def test_with_snapshots_off_the_main_stream_is_never_read(monkeypatch: pytest.MonkeyPatch, scene: np.ndarray) -> None:
    camera = fake.FakeCamera(scene)
    fake.install(monkeypatch, camera)
    source = make_source(SourceSpec(SourceConfig(kind="picamera2", picamera2=Picamera2SourceConfig()), 0.875))  # keep_still defaults to False
    source.open()
    frames = [source.read() for _ in range(3)]
    source.close()
    assert all(f is not None and f.still is None for f in frames)
    assert camera.made == ["lores"] * 3  # no main array made, no copy
    assert camera.configs[0]["main"]["format"] == "XBGR8888" and camera.configs[0]["main"]["size"] == (640, 480)  # main as before
