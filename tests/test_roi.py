"""Region of interest: geometry (pixel box, ScalerCrop), config errors, and real pixels through classify and the daemon."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from edge.config import ConfigError, parse
from edge.model.preprocess import CROP_FRACTION, crop_box, load_image
from edge.model.region import FULL, Crop, parse_roi, pixel_box, scaler_crop
from tests.support.daemon import EXE, write_config

MINIMAL = {"sinks": {"stdout": {"enabled": True}}}
CORNER = (0.75, 0.75, 0.25, 0.25)  # bottom right, where the photo is pasted


def test_the_whole_frame_is_the_centre_crop_of_before() -> None:
    assert pixel_box(640, 480, FULL, 0.875) == crop_box(640, 480, 0.875)
    assert pixel_box(640, 480) == (0, 0, 640, 480)


def test_the_centre_crop_applies_inside_the_region() -> None:
    assert pixel_box(1000, 500, (0.5, 0.0, 0.5, 0.5)) == (500, 0, 1000, 250)
    # 0.8 of a 500 x 250 region: 50 / 25 pixels off each side
    assert pixel_box(1000, 500, (0.5, 0.0, 0.5, 0.5), 0.8) == pytest.approx((550, 25, 950, 225))


@pytest.mark.parametrize(
    ("roi", "full", "minimum", "expected"),
    [
        (FULL, (0, 0, 4608, 2592), (64, 64), (0, 0, 4608, 2592)),
        ((0.25, 0.5, 0.5, 0.5), (0, 0, 4608, 2592), (64, 64), (1152, 1296, 2304, 1296)),
        # a mode whose field of view is itself a crop of the pixel array: offsets added (rpicam-apps)
        ((0.5, 0.5, 0.5, 0.5), (1000, 752, 1280, 960), (64, 64), (1640, 1232, 640, 480)),
        # truncation: 0.333 * 3280 = 1092.24 -> 1092
        ((0.333, 0.0, 0.333, 1.0), (0, 0, 3280, 2464), (1, 1), (1092, 0, 1092, 2464)),
        # 4 x 6 is under the ISP's 64 x 64 minimum: grown to 64 x 96 (the minimum widened to the
        # region's aspect, Size::expandedToAspectRatio) about its centre (2002, 1503) ...
        ((0.5, 0.5, 0.001, 0.002), (0, 0, 4000, 3000), (64, 64), (1970, 1455, 64, 96)),
        # ... and moved back inside the field of view at the edge (0.999 * 4000 truncates to 3995;
        # 4 x 3 grows to 85 x 64)
        ((0.999, 0.0, 0.001, 0.001), (0, 0, 4000, 3000), (64, 64), (3915, 0, 85, 64)),
    ],
)
def test_scaler_crop(roi: tuple[float, float, float, float], full: tuple[int, ...], minimum: tuple[int, int], expected: tuple[int, ...]) -> None:
    assert scaler_crop(roi, full, minimum) == expected


def test_scaler_crop_can_carry_the_centre_crop_too() -> None:
    assert scaler_crop(FULL, (0, 0, 4000, 3000), fraction=0.875) == (250, 188, 3500, 2625)  # 187.5 .. 2812.5, each edge rounded half up


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0,0,1", "four fractions"),
        ("a,b,c,d", "four fractions"),
        ("0,0,1.5,1", "between 0 and 1"),
        ("0,0,0,1", "greater than 0"),
        ("0.5,0,0.6,1", "inside the frame"),
    ],
)
def test_parse_roi_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_roi(text)


@pytest.mark.parametrize(
    ("roi", "message"),
    [
        ([0, 0, 1.2, 1], r"source.roi: every value must be between 0 and 1, got \[0.0, 0.0, 1.2, 1.0\]"),
        ([-0.1, 0, 1, 1], r"source.roi: every value must be between 0 and 1, got \[-0.1, 0.0, 1.0, 1.0\]"),
        ([0, 0, 0, 1], r"source.roi: width and height must be greater than 0"),
        ([0.5, 0.5, 0.6, 0.2], r"source.roi: must lie inside the frame"),
        ([0, 0, 1], r"source.roi: expected a list of 4 values"),
    ],
)
def test_bad_roi_names_the_key(roi: list[float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse({**MINIMAL, "source": {"roi": roi}})
    assert parse({**MINIMAL, "source": {"roi": [0.1, 0.2, 0.9, 0.8]}}).source.roi == (0.1, 0.2, 0.9, 0.8)


def test_crop_fraction_moved_to_the_manifest() -> None:
    with pytest.raises(ConfigError, match=r"source.crop_fraction: removed: the centre crop is the model's own \(its manifest's crop_fraction\)"):
        parse({**MINIMAL, "source": {"crop_fraction": 0.875}})


@pytest.fixture(scope="module")
def canvas(tmp_path_factory: pytest.TempPathFactory, shared: Path) -> Path:
    """The parrot photo pasted at a quarter of the size into the bottom-right corner of a grey canvas."""
    photo = Image.open(shared / "data" / "samples" / "parrot.jpg").convert("RGB")
    image = Image.new("RGB", (photo.width * 4, photo.height * 4), (128, 128, 128))
    image.paste(photo, (image.width - photo.width, image.height - photo.height))
    folder = tmp_path_factory.mktemp("canvas")
    image.save(folder / "canvas.png")
    return folder / "canvas.png"


def test_load_image_crops_to_the_region_before_the_resize(canvas: Path, shared: Path) -> None:
    photo = load_image(shared / "data" / "samples" / "parrot.jpg")
    region = load_image(canvas, Crop(CORNER, CROP_FRACTION))
    assert abs(region.astype(int) - photo.astype(int)).mean() < 2  # the same pixels, up to resampling


@pytest.mark.slow
def test_classify_roi_finds_the_photo_in_the_corner(canvas: Path, converted_model: Path) -> None:
    def classify(*extra: str) -> dict[str, object]:
        cmd = [EXE, "classify", "--json", "--groups", "bird", "--model", str(converted_model), *extra, str(canvas)]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        out: dict[str, object] = json.loads(run.stdout)
        return out

    whole, corner = classify(), classify("--roi", ",".join(map(str, CORNER)))
    assert whole["top_k"][0]["label"] != "macaw" and whole["answer"] == "other"  # type: ignore[index]
    assert corner["top_k"][0]["label"] == "macaw" and corner["answer"] == "bird"  # type: ignore[index]


@pytest.mark.slow
def test_the_daemon_looks_at_the_region(tmp_path: Path, canvas: Path, converted_model: Path) -> None:
    def run(roi: list[float]) -> dict[str, object]:
        config = write_config(
            tmp_path / "c.toml",
            {
                "state_dir": str(tmp_path / "state"),
                "model": {"path": str(converted_model)},
                "source": {"kind": "images", "roi": roi, "images": {"path": str(canvas)}},
                "results": {"groups": ["bird", "dog"]},
                "sinks": {"stdout": {"enabled": True}, "file": {"enabled": False}},
            },
        )
        proc = subprocess.run([EXE, "run", "--config", str(config)], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        (record,) = map(json.loads, proc.stdout.splitlines())
        assert record["v"] == 2
        return record  # type: ignore[no-any-return]

    whole, corner = run([0, 0, 1, 1]), run(list(CORNER))
    assert whole["answer"] == "other" and whole["top_k"][0]["class_index"] != 89  # type: ignore[index]
    assert corner["answer"] == "bird" and corner["top_k"][0]["class_index"] == 89  # type: ignore[index]
    assert [g["name"] for g in corner["groups"]] == ["bird", "other", "dog"]  # type: ignore[union-attr]


def test_a_video_source_crops_to_the_region_before_the_resize(tmp_path: Path, canvas: Path, converted_model: Path) -> None:
    import av
    import numpy as np

    from edge.config import VideoSourceConfig
    from edge.model.engine import Engine
    from edge.sources.video import VideoSource

    image = np.asarray(Image.open(canvas).resize((1024, 1856)))  # even sides for yuv420p
    clip = tmp_path / "canvas.mp4"
    with av.open(str(clip), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt, stream.bit_rate = 1024, 1856, "yuv420p", 8_000_000
        for packet in [*stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")), *stream.encode()]:
            container.mux(packet)
    engine = Engine(converted_model, self_test=False)

    def top1(roi: tuple[float, float, float, float]) -> str:
        source = VideoSource(VideoSourceConfig(url=str(clip)), Crop(roi, engine.manifest.crop_fraction))
        source.open()
        frame = source.read()
        source.close()
        assert frame is not None
        return engine.top_k(engine.classify(frame.pixels), 1)[0].label

    assert top1(FULL) != "macaw"
    assert top1(CORNER) == "macaw"
