"""`mnv1-edge convert` without --source: the pinned archive downloaded (from a loopback server standing in
for its host), checked against the sha256 pin, cached, and refused when truncated or wrong; --no-gate."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge import paths
from edge.convert import source
from tests.support.archive_server import ArchiveServer, make_archive, official_like, serving

ARCHIVE = "/models/mobilenet_v1_2018_02_22/mobilenet_v1_0.25_128.tgz"


def convert(tmp_path: Path, url: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`convert` with no --source: the archive comes from MNV1_EDGE_FLOAT_URL, cached under tmp_path/cache."""
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    environ = dict(os.environ, MNV1_EDGE_FLOAT_URL=url, XDG_CACHE_HOME=str(tmp_path / "cache"), **(env or {}))
    cmd = [sys.executable, "-m", "edge", "convert", "--out", str(out / "m.tflite"), "--report", str(out / "r.json"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=environ)


def cached_files(tmp_path: Path) -> list[Path]:
    return sorted(p for p in (tmp_path / "cache").rglob("*") if p.is_file())


@pytest.mark.slow
def test_the_download_is_verified_converted_and_cached(tmp_path: Path, shared: Path) -> None:
    samples = ["--calibration", str(paths.sample_images()), "--calibration-count", "8", "--no-gate"]
    with serving(ArchiveServer({ARCHIVE: official_like(paths.float_model())})) as server:
        url = server.url(ARCHIVE)
        first = convert(tmp_path, url, *samples)
        assert first.returncode == 0, first.stderr
        assert server.requests == [ARCHIVE]
        (tmp_path / "out" / "m.tflite").rename(tmp_path / "first.tflite")
        second = convert(tmp_path, url, *samples)
        assert second.returncode == 0, second.stderr
        assert server.requests == [ARCHIVE]  # the second run took the cached model: no request
    assert cached_files(tmp_path) == [tmp_path / "cache" / "mnv1-edge" / source.cached_model().name]
    assert hashlib.sha256(cached_files(tmp_path)[0].read_bytes()).hexdigest() == source.SHA256
    model = tmp_path / "out" / "m.tflite"
    assert model.read_bytes() == (tmp_path / "first.tflite").read_bytes()  # same source, same images: same model
    provenance = json.loads(Path(f"{model}.json").read_text())["provenance"]
    assert provenance["source"] == url and provenance["source_verified"] is True
    assert provenance["accuracy_gate"] == "skipped (--no-gate)"
    # The gate's absence is said once on stderr, in the summary and in the report; never "passed".
    skipped = [line for line in second.stderr.splitlines() if "accuracy gate skipped (--no-gate)" in line]
    assert len(skipped) == 1 and skipped[0].startswith("mnv1-edge convert: warning:")
    assert "NOT MEASURED: accuracy gate skipped" in second.stdout and "evaluated on" not in second.stdout
    report = json.loads((tmp_path / "out" / "r.json").read_text())
    assert report["gate"]["passed"] is None and "--no-gate" in report["gate"]["skipped"] and report["evaluation"] is None


def _wrong_model() -> bytes:
    return paths.reference_quant_model().read_bytes()  # a TFLite MobileNet too, but not the pinned float model


@pytest.mark.parametrize(
    ("served", "dropped", "fragment"),
    [
        ("truncated", False, "not a .tflite file nor a readable .tgz archive"),
        ("full", True, "download truncated"),
        ("other model", False, "does not match the pinned"),
        ("no member", False, f"archive has no {source.MEMBER}"),
        ("html", False, "not a .tflite file nor a readable .tgz archive"),
        ("missing", False, "download failed (Not Found)"),
    ],
)
@pytest.mark.slow
def test_a_bad_download_is_refused_and_not_cached(tmp_path: Path, shared: Path, served: str, dropped: bool, fragment: str) -> None:
    good = official_like(paths.float_model())
    body = {
        "truncated": good[: len(good) // 2],
        "full": good,
        "other model": make_archive(_wrong_model()),
        "no member": make_archive(paths.float_model().read_bytes(), member="model.tflite"),
        "html": b"<html><body>Moved</body></html>",
    }.get(served)
    files = {ARCHIVE: body} if body is not None else {}
    with serving(ArchiveServer(files, {ARCHIVE} if dropped else set())) as server:
        result = convert(tmp_path, server.url(ARCHIVE))
    errors = [line for line in result.stderr.splitlines() if line.startswith("mnv1-edge convert: error:")]
    assert result.returncode != 0 and len(errors) == 1, result.stderr
    assert server.url(ARCHIVE) in errors[0] and fragment in errors[0], errors[0]
    assert "Traceback" not in result.stderr
    assert list((tmp_path / "out").iterdir()) == [], "a refused download left a model behind"
    assert cached_files(tmp_path) == [], "a refused download was cached"


def test_a_damaged_cache_is_replaced_by_a_fresh_download(tmp_path: Path, shared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    source.cached_model().parent.mkdir(parents=True)
    source.cached_model().write_bytes(paths.float_model().read_bytes()[:1000])  # a torn write, a bad sector
    with serving(ArchiveServer({ARCHIVE: official_like(paths.float_model())})) as server:
        got = source.resolve(server.url(ARCHIVE))
        assert server.requests == [ARCHIVE] and got.verified
    assert source.cached_model().read_bytes() == paths.float_model().read_bytes()


def test_an_unverified_download_neither_uses_nor_fills_the_cache(tmp_path: Path, shared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With --allow-unverified the URL may hold another model: it must be that model, not the cached pin."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    source.cached_model().parent.mkdir(parents=True)
    source.cached_model().write_bytes(paths.float_model().read_bytes())
    with serving(ArchiveServer({ARCHIVE: make_archive(_wrong_model())})) as server:
        got = source.resolve(server.url(ARCHIVE), allow_unverified=True)
        assert server.requests == [ARCHIVE]
    assert not got.verified and got.data == _wrong_model()
    assert source.cached_model().read_bytes() == paths.float_model().read_bytes()


def test_the_url_override_is_the_default_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(source.URL_ENV, raising=False)
    assert source.default_url() == source.ARCHIVE_URL
    monkeypatch.setenv(source.URL_ENV, "http://mirror.example/m.tgz")
    assert source.default_url() == "http://mirror.example/m.tgz"


def test_without_labelled_images_the_gate_names_the_way_out(tmp_path: Path, shared: Path) -> None:
    """No ../shared (so no default labelled set) and an unlabelled photo folder: one line that
    offers --eval-images or --no-gate, before any heavy work."""
    empty = tmp_path / "no-shared"
    empty.mkdir()
    result = convert(
        tmp_path,
        "http://127.0.0.1:9/unused.tgz",
        "--source",
        str(paths.float_model()),
        "--calibration",
        str(paths.sample_images()),
        env={"MNV1_EDGE_SHARED": str(empty)},
    )
    errors = [line for line in result.stderr.splitlines() if line.startswith("mnv1-edge convert: error:")]
    assert result.returncode != 0 and len(errors) == 1, result.stderr
    assert "no labels.csv to measure the model on" in errors[0] and "--eval-images DIR" in errors[0] and "--no-gate" in errors[0]
    assert list((tmp_path / "out").iterdir()) == []


def test_no_gate_and_eval_images_are_exclusive(tmp_path: Path) -> None:
    result = convert(tmp_path, "http://127.0.0.1:9/unused.tgz", "--no-gate", "--eval-images", str(tmp_path))
    assert result.returncode == 2 and "--eval-images: not allowed with argument --no-gate" in result.stderr, result.stderr


def test_no_gate_plans_no_evaluation_and_keeps_a_labelled_folders_held_out_half_unused(shared: Path) -> None:
    from edge.convert import dataset
    from edge.convert.run import Options, plan_images

    plan = plan_images(Options(out=Path("m.tflite"), calibration=paths.dev_images(), calibration_count=1000, gate=None))
    assert plan.eval_folder is None and plan.calibration_split == "calibration"
    assert plan.calibration == [p for p, _ in dataset.select(dataset.read_labelled(paths.dev_images()), "calibration")]
