"""Image files as every reader sees them (classify, the images source, train): one decoder, one region check."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge.errors import SourceError
from edge.model.preprocess import CROP_FRACTION, load_image
from edge.model.region import Crop
from edge.train import dataset
from tests.support.daemon import base_config, write_config
from tests.support.faults import cli, model, png_bomb

__all__ = ["model"]  # a fixture

ORIENTATION = 0x0112
# What a camera stores for each EXIF orientation, given the upright picture (the inverse of what a viewer applies).
STORED = {
    3: Image.Transpose.ROTATE_180,
    6: Image.Transpose.ROTATE_90,  # stored turned left; the viewer turns it right
    8: Image.Transpose.ROTATE_270,
    5: Image.Transpose.TRANSPOSE,
}


def classify_json(model: Path, *images: Path, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return cli("classify", "--model", str(model), "--json", *extra, *map(str, images))


def top(run: subprocess.CompletedProcess[str]) -> list[dict[str, object]]:
    assert run.returncode == 0, run.stderr
    return [json.loads(line) for line in run.stdout.splitlines()]


def grey_copies(tmp_path: Path, shared: Path) -> tuple[Path, Path, Path]:
    """The owl as an 8-bit grey PNG, the same pixels as 16-bit grey (x257) and as a float TIFF (/255)."""
    grey = np.asarray(Image.open(shared / "data" / "samples" / "owl.jpg").convert("L"))
    eight = tmp_path / "owl8.png"
    Image.fromarray(grey).save(eight)
    sixteen = tmp_path / "owl16.png"
    Image.fromarray(grey.astype(np.uint16) * 257).save(sixteen)
    floating = tmp_path / "owl-float.tif"
    Image.fromarray(grey.astype(np.float32) / 255.0, "F").save(floating)
    assert Image.open(sixteen).mode == "I;16" and Image.open(floating).mode == "F"
    return eight, sixteen, floating


def test_16_bit_and_float_pictures_read_as_their_8_bit_copy_everywhere(tmp_path: Path, model: Path, shared: Path) -> None:
    """Pillow's convert("RGB") clipped 16-bit grey to white and float 0..1 to black."""
    eight, sixteen, floating = grey_copies(tmp_path, shared)
    reference = load_image(eight)
    for path in (sixteen, floating):
        assert np.array_equal(load_image(path), reference), path  # the images source and classify
    results = top(classify_json(model, eight, sixteen, floating))
    assert results[0]["top_k"] == results[1]["top_k"] == results[2]["top_k"]
    # train reads through the same decoder
    image, problem = dataset._decode(sixteen, 128)
    assert problem == "" and image is not None and np.array_equal(np.asarray(image), np.asarray(Image.open(eight).convert("RGB")))


def test_float_pixels_outside_0_1_are_refused_naming_the_mode(tmp_path: Path, model: Path) -> None:
    hdr = tmp_path / "hdr.tif"
    Image.fromarray(np.linspace(-5, 300, 64 * 64, dtype=np.float32).reshape(64, 64), "F").save(hdr)
    with pytest.raises(SourceError, match=r"hdr.tif: floating-point pixels \(mode F\) outside 0..1"):
        load_image(hdr)
    run = cli("classify", "--model", str(model), str(hdr))
    assert run.returncode != 0 and "floating-point pixels (mode F) outside 0..1" in run.stderr and "Traceback" not in run.stderr


def oriented(upright: Image.Image, path: Path, orientation: int) -> Path:
    """`upright` saved the way a phone saves it: pixels turned, with the EXIF tag that turns them back."""
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    upright.transpose(STORED[orientation]).save(path, exif=exif, quality=95)
    return path


@pytest.mark.parametrize("orientation", [3, 5, 6, 8])
def test_exif_orientation_is_applied_before_the_crop_and_region(tmp_path: Path, orientation: int) -> None:
    picture = Image.fromarray(np.random.default_rng(1).integers(0, 255, (90, 160, 3), dtype=np.uint8).repeat(4, 0).repeat(4, 1))
    plain = tmp_path / "upright.png"
    picture.save(plain)
    turned = oriented(picture, tmp_path / "turned.png", orientation)  # PNG: lossless, so the pixels must match exactly
    roi = (0.5, 0.0, 0.5, 0.6)
    assert np.array_equal(load_image(turned, Crop(roi, CROP_FRACTION)), load_image(plain, Crop(roi, CROP_FRACTION)))
    assert np.array_equal(load_image(turned), load_image(plain))
    image, _ = dataset._decode(turned, 128)
    assert image is not None and image.size == picture.size


def test_a_portrait_phone_photo_is_classified_upright(tmp_path: Path, model: Path, shared: Path) -> None:
    """A JPEG stored sideways (Orientation 6) was classified as "maypole" instead of "macaw"."""
    parrot = Image.open(shared / "data" / "samples" / "parrot.jpg")
    portrait = oriented(parrot, tmp_path / "portrait.jpg", 6)
    results = top(classify_json(model, shared / "data" / "samples" / "parrot.jpg", portrait))
    assert results[1]["top_k"][0]["label"] == results[0]["top_k"][0]["label"] == "macaw", results  # type: ignore[index]


def test_the_images_source_and_its_snapshot_view_apply_the_orientation(tmp_path: Path) -> None:
    from edge.config import ImagesSourceConfig
    from edge.sources.images import ImagesSource

    picture = Image.fromarray(np.random.default_rng(2).integers(0, 255, (60, 200, 3), dtype=np.uint8).repeat(3, 0).repeat(3, 1))
    folder = tmp_path / "in"
    folder.mkdir()
    oriented(picture, folder / "a.png", 6)
    source = ImagesSource(ImagesSourceConfig(path=str(folder)))
    source.open()
    frame = source.read()
    assert frame is not None and frame.still is not None
    assert frame.still(1000).size == picture.size  # upright: 600x180, not 180x600


def test_a_huge_picture_in_a_training_folder_is_skipped_unread(tmp_path: Path) -> None:
    """train decoded a 100-megapixel PNG whole (522 MB) and Pillow's DecompressionBombWarning reached stderr."""
    root = tmp_path / "images"
    for name in ("cat", "none"):
        (root / name).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (160, 160), (40 * i, 90, 30)).save(root / name / f"{i}.png")
    png_bomb(root / "cat" / "huge.png", 10000, 10000)
    probe = (
        "import json, resource, sys\n"
        "from pathlib import Path\n"
        "from edge.train import dataset\n"
        "data = dataset.load(Path(sys.argv[1]), dataset.Limits(min_per_class=1), 1.0)\n"
        "print(json.dumps({'skipped': data.skipped, 'kept': len(data.paths), 'maxrss_kb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))\n"
    )
    run = subprocess.run([sys.executable, "-c", probe, str(root)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.splitlines()[-1])
    assert result["kept"] == 4 and len(result["skipped"]) == 1, result
    assert "huge.png: 10000x10000 pixels (100 M) is more than the decode budget" in result["skipped"][0]
    assert result["maxrss_kb"] < 300_000, result
    assert "DecompressionBombWarning" not in run.stderr, run.stderr


@pytest.mark.parametrize("roi", ["0,0,5e-324,5e-324", "0,0,1e-9,0.5", "0,0,nan,1"], ids=["denormal", "under-a-pixel-of-any-frame", "nan"])
def test_a_region_under_one_pixel_is_a_usage_error(roi: str) -> None:
    """--roi 0,0,5e-324,5e-324 was an OverflowError traceback."""
    run = cli("classify", "--roi", roi, "x.jpg")
    assert run.returncode == 2 and "--roi" in run.stderr and "Traceback" not in run.stderr, run.stderr


def test_source_roi_under_one_pixel_of_any_frame_is_a_config_error(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", {"source": {"roi": [0.0, 0.0, 5e-324, 5e-324]}})
    run = cli("check-config", "--syntax-only", str(config))
    assert run.returncode == 78 and "source.roi: width and height must be at least 1/65536" in run.stderr, run.stderr


def test_a_region_under_one_pixel_of_this_picture_is_refused_and_a_tiny_one_said(tmp_path: Path, model: Path) -> None:
    """An 8x8 image (or a region under a pixel of it) was classified without a word; train refuses such images."""
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (8, 8), (200, 30, 30)).save(tiny)
    under = cli("classify", "--model", str(model), "--roi", "0,0,0.05,0.05", str(tiny))
    assert under.returncode != 0 and "tiny.png: the region [0.0, 0.0, 0.05, 0.05]" in under.stderr and "under one pixel" in under.stderr
    said = cli("classify", "--model", str(model), str(tiny))
    assert said.returncode == 0, said.stderr
    assert "tiny.png: the model sees 7x7 pixels of it, upscaled to 128x128: its answer means little" in said.stderr, said.stderr


def test_the_synthetic_source_applies_the_region(tmp_path: Path) -> None:
    """source.roi was silently ignored by the synthetic source."""
    from edge.config import SyntheticSourceConfig
    from edge.sources.synthetic import SyntheticSource

    whole, region = SyntheticSource(SyntheticSourceConfig(frames=1)), SyntheticSource(SyntheticSourceConfig(frames=1), Crop((0.0, 0.0, 0.5, 0.5)))
    whole.open()
    region.open()
    a, b = whole.read(), region.read()
    assert a is not None and b is not None and b.pixels.shape == (128, 128, 3)
    expected = np.asarray(Image.fromarray(a.pixels).resize((128, 128), Image.Resampling.BILINEAR, box=(0, 0, 64, 64)))
    assert np.array_equal(b.pixels, expected)


def test_a_daemon_on_an_oriented_folder_reads_it_upright(tmp_path: Path, model: Path, shared: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    oriented(Image.open(shared / "data" / "samples" / "parrot.jpg"), folder / "portrait.jpg", 6)
    data = base_config(tmp_path, model)
    data["source"] = {"kind": "images", "images": {"path": str(folder)}}
    run = cli("run", "--config", str(write_config(tmp_path / "c.toml", data)))
    assert run.returncode == 0, run.stderr
    record = json.loads((tmp_path / "results.jsonl").read_text().splitlines()[0])
    assert record["top_k"][0]["label"] == "macaw", record
