"""`mnv1-edge convert` refuses bad input with one clear line, a non-zero exit and no output file."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from edge import paths
from edge.convert import dataset, source
from edge.errors import ModelError, SourceError
from edge.model.preprocess import list_images

REPO = Path(__file__).resolve().parent.parent


def convert(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    out = tmp_path / "out" / "m.tflite"
    out.parent.mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "edge", "convert", "--out", str(out), "--report", str(out.parent / "r.json"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)


def assert_refused(result: subprocess.CompletedProcess[str], tmp_path: Path, *fragments: str) -> None:
    lines = [line for line in result.stderr.splitlines() if line.startswith("mnv1-edge convert: error:")]
    assert result.returncode != 0, result.stderr
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.stderr
    assert list((tmp_path / "out").iterdir()) == [], "a refused conversion left files behind"


def test_missing_source(tmp_path: Path) -> None:
    missing = tmp_path / "nope.tflite"
    assert_refused(convert(tmp_path, "--source", str(missing)), tmp_path, str(missing), "no such file")


def test_source_that_is_not_a_flatbuffer(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"this is not a model" * 10)
    assert_refused(convert(tmp_path, "--source", str(junk)), tmp_path, str(junk), "not a TFLite flatbuffer")


def test_checksum_mismatch(tmp_path: Path) -> None:
    tampered = tmp_path / "float.tflite"
    data = bytearray(paths.float_model().read_bytes())
    data[-100] ^= 0x01  # one weight bit
    tampered.write_bytes(bytes(data))
    assert_refused(convert(tmp_path, "--source", str(tampered)), tmp_path, str(tampered), "does not match the pinned", "--allow-unverified")


def test_model_of_another_kind_even_when_unverified(tmp_path: Path, shared: Path) -> None:
    """Google's uint8 model is a TFLite MobileNet too, but not the float source."""
    quant = paths.reference_quant_model()
    small = tmp_path / "cal"
    small.mkdir()
    for image in list_images(paths.dev_images())[:4]:
        shutil.copy(image, small)
    result = convert(tmp_path, "--source", str(quant), "--allow-unverified", "--calibration", str(small), "--eval-images", str(paths.dev_images()))
    assert_refused(result, tmp_path, str(quant), "input is uint8, not float32")


def test_empty_calibration_folder(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = convert(tmp_path, "--source", str(paths.float_model()), "--calibration", str(empty), "--eval-images", str(paths.dev_images()))
    assert_refused(result, tmp_path, str(empty), "no images")


def test_too_many_corrupt_calibration_images(tmp_path: Path) -> None:
    folder = tmp_path / "cal"
    folder.mkdir()
    for image in list_images(paths.dev_images())[:3]:
        shutil.copy(image, folder)
    for i in range(4):
        (folder / f"corrupt{i}.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    result = convert(tmp_path, "--source", str(paths.float_model()), "--calibration", str(folder), "--eval-images", str(paths.dev_images()))
    assert_refused(result, tmp_path, "only 3 readable calibration images (4 unreadable)")


@pytest.mark.parametrize("where", ["missing-dir/m.tflite", "file/m.tflite", "/proc/mnv1-edge-test.tflite"])
def test_unwritable_output(tmp_path: Path, where: str) -> None:
    (tmp_path / "file").write_text("a file, not a folder")
    out = tmp_path / where if not where.startswith("/") else Path(where)
    cmd = [sys.executable, "-m", "edge", "convert", "--source", str(paths.float_model()), "--out", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 73, result.stderr
    assert result.stderr.count("error:") == 1 and str(out) in result.stderr and "cannot write" in result.stderr
    assert not out.exists()


def test_corrupt_images_are_skipped_and_counted(tmp_path: Path) -> None:
    good = list_images(paths.dev_images())[:2]
    for image in good:
        shutil.copy(image, tmp_path)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    images = dataset.load(list_images(tmp_path), "calibration", minimum=2)
    assert images.frames.shape == (2, 128, 128, 3)
    assert len(images.skipped) == 1 and "broken.png" in images.skipped[0]
    with pytest.raises(SourceError, match="only 2 readable"):
        dataset.load(list_images(tmp_path), "calibration", minimum=3)


def test_split_is_fixed_and_disjoint() -> None:
    items = list(range(10))
    assert dataset.select(items, "calibration") == [0, 2, 4, 6, 8]
    assert dataset.select(items, "held-out") == [1, 3, 5, 7, 9]
    assert dataset.select(items, "all") == items


def test_local_archive_is_unpacked_and_verified(tmp_path: Path) -> None:
    archive = tmp_path / "mobilenet_v1_0.25_128.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        data = paths.float_model().read_bytes()
        info = tarfile.TarInfo(f"./{source.MEMBER}")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    got = source.resolve(str(archive))
    assert got.verified and got.sha256 == source.SHA256 and got.data == data


def test_offline_download_names_the_url_and_the_way_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    url = "http://127.0.0.1:9/mobilenet_v1_0.25_128.tgz"  # discard port: nothing listens
    with pytest.raises(ModelError, match=r"download failed .*--source PATH"):
        source.resolve(url)


def test_committed_source_manifest_matches_the_pins() -> None:
    data = json.loads((REPO / "models" / "source.json").read_text())
    assert data["url"] == source.ARCHIVE_URL and data["sha256"] == source.SHA256 and data["member"] == source.MEMBER
    assert data["license"] == "Apache-2.0"


@pytest.mark.slow
def test_float_model_of_another_architecture(tmp_path: Path) -> None:
    """A float TFLite network that is not MobileNet v1 0.25/128: the source without its softmax."""
    from edge.convert import flatbuf

    model = flatbuf.read(paths.float_model().read_bytes(), "float")
    sg = model.subgraphs[0]
    sg.outputs = [int(sg.operators[-2].outputs[0])]
    sg.operators = sg.operators[:-1]
    other = tmp_path / "other.tflite"
    other.write_bytes(flatbuf.write(model))
    assert_refused(
        convert(tmp_path, "--source", str(other), "--allow-unverified"), tmp_path, str(other), "not MobileNet v1 0.25/128", "30 ops", "expected 31"
    )


@pytest.mark.parametrize("count", ["0", "-3", "many"])
def test_calibration_count_must_be_positive(tmp_path: Path, count: str) -> None:
    result = convert(tmp_path, "--source", str(paths.float_model()), f"--calibration-count={count}")
    assert result.returncode == 2, result.stderr
    assert f"argument --calibration-count: expected a positive integer, got '{count}'" in result.stderr
    assert "Traceback" not in result.stderr and list((tmp_path / "out").iterdir()) == []


def test_shared_folder_halves_stay_disjoint_with_an_unlabelled_image(tmp_path: Path) -> None:
    """An image without a labels.csv row (sorting first) must not shift calibration onto held-out images."""
    from edge.convert.dataset import load_labelled, read_labelled
    from edge.convert.run import Options, plan_images

    folder = tmp_path / "images"
    folder.mkdir()
    rows = (paths.dev_images() / "labels.csv").read_text().splitlines()
    (folder / "labels.csv").write_text("\n".join(rows[:11]) + "\n")
    for row in rows[1:11]:
        shutil.copy(paths.dev_images() / row.split(",")[0], folder)
    shutil.copy(paths.dev_images() / rows[20].split(",")[0], folder / "a_unlabelled.jpg")
    labelled = [p for p, _ in read_labelled(folder)]
    assert list_images(folder)[0].name == "a_unlabelled.jpg" and len(labelled) == 10

    plan = plan_images(Options(out=tmp_path / "m.tflite", calibration=folder))
    assert plan.eval_folder is not None
    held, frames, _ = load_labelled(plan.eval_folder, plan.eval_split)  # what convert measures on
    assert (plan.calibration_split, plan.eval_split) == ("calibration", "held-out")
    assert plan.calibration == labelled[0::2] and held == labelled[1::2] and len(frames) == 5
    assert not set(plan.calibration) & set(held)
    few = plan_images(Options(out=tmp_path / "m.tflite", calibration=folder, calibration_count=2))
    assert few.calibration == labelled[0:4:2]


def test_dev_folder_split_is_unchanged() -> None:
    """The dev folder's labels.csv lists exactly its images, so the split (and the model) stays as before."""
    from edge.convert.run import Options, plan_images

    plan = plan_images(Options(out=Path("m.tflite")))
    images = list_images(paths.dev_images())
    assert plan.calibration == images[0::2][:250] and len(plan.calibration) == 250
    assert plan.eval_folder == paths.dev_images() and plan.eval_split == "held-out"
