"""The real-footage benchmark's plumbing: pins, verified fetches (copy, git directory, download), the
labelling rule, capture-named frames split in time, and the table. The trainings themselves run in the benchmark."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.footage import prepare, run, sources

REPO = Path(__file__).resolve().parent.parent
SIDE = 160  # the fake scene's frames: 160x160, a 64 px region at (48, 48)


def test_every_scene_file_is_pinned_and_every_region_is_a_square_inside_its_frame() -> None:
    manifest = sources.load()
    assert len(manifest.scenes) >= 4
    for scene in manifest.scenes.values():
        pinned = scene.source.files()
        assert all(path in pinned for path in scene.paths()), scene.name
        assert len(scene.source.commit) == 40
        (w, h), (x, y, side) = scene.size, scene.region
        assert min(x, y) >= 0 and x + side <= w and y + side <= h, scene.name
        _, _, rw, rh = scene.roi()
        assert rw * w == pytest.approx(rh * h)  # square in pixels: the model's aspect
        case = manifest.cases[scene.name]
        assert scene.first < case.train_before == case.test_from <= scene.last


def test_the_labelling_rule() -> None:
    region = (10, 10, 20)  # 400 pixels: 1 % is 4
    mask = np.zeros((40, 40), np.uint8)
    assert prepare.label(mask, region) == "absent"
    mask[0:5, 0:5] = 255  # moving, but outside the region
    assert prepare.label(mask, region) == "absent"
    mask[12, 12:15] = 255  # 3 moving pixels: too few to call
    assert prepare.label(mask, region) is None
    mask[12, 15] = 255  # 4: present
    assert prepare.label(mask, region) == "present"
    edge = np.zeros((40, 40), np.uint8)
    edge[20, 20] = 170  # only an object's blurred edge: left out
    assert prepare.label(edge, region) is None
    outside = np.zeros((40, 40), np.uint8)
    outside[29, 29] = 85  # the benchmark does not judge this pixel: left out
    assert prepare.label(outside, region) is None


def test_a_dimmed_case_relights_its_later_frames_as_a_camera_would() -> None:
    manifest = sources.load()
    dim_case = manifest.cases["lab-dim"]
    assert dim_case.scene is manifest.scenes["lab"] and dim_case.later_light == 0.125 and manifest.cases["lab"].later_light == 1.0
    frames = np.stack([np.full((4, 4, 3), v, np.uint8) for v in (0, 64, 128, 255)])
    out = prepare.dim(frames, 0.125).reshape(4, -1).mean(axis=1)
    expected = 255 * ((np.array([0, 64, 128, 255]) / 255) ** prepare.GAMMA * 0.125) ** (1 / prepare.GAMMA)  # 0 (+ the noise floor), 25, 50, 99
    assert np.all(np.abs(out - expected) < [10, 3, 2, 2]) and np.all(np.diff(out) > 0), out
    assert np.array_equal(prepare.dim(frames, 0.125), prepare.dim(frames, 0.125))  # the same frames on every run


def test_frames_are_named_as_capture_names_them(tmp_path: Path) -> None:
    from edge.commands.capture import _save

    scene = _fake_manifest(tmp_path).scenes["fake"]
    for n in (0, 1, 7, 25, 1699):
        ts = prepare.capture_time(scene, n)
        out = tmp_path / f"capture{n}"
        out.mkdir()
        _save(np.zeros((8, 8, 3), np.uint8), ts, out)
        assert [p.name for p in out.iterdir()] == [prepare.capture_name(ts)]


def test_fetch_from_a_copy_verifies_every_file(tmp_path: Path) -> None:
    manifest = _fake_manifest(tmp_path)
    work = tmp_path / "work"
    scenes = list(manifest.scenes.values())
    assert sources.fetch(work, scenes, [tmp_path / "copy"]) == 2 * 40
    assert sources.fetch(work, scenes, [tmp_path / "copy"]) == 0  # all there and intact: nothing to do
    victim = sources.local_path(work, scenes[0].source, "seq/input/in000003.png")
    victim.write_bytes(b"damaged")
    (tmp_path / "copy" / "owner+fake" / "seq" / "input" / "in000003.png").write_bytes(b"also damaged")
    with pytest.raises(sources.FootageError, match=r"in000003.png: sha256 .* is not the pinned"):
        sources.fetch(work, scenes, [tmp_path / "copy"])


def test_fetch_reads_a_bare_git_directory_at_the_pinned_commit(tmp_path: Path) -> None:
    manifest = _fake_manifest(tmp_path, git=True)
    work = tmp_path / "work"
    scenes = list(manifest.scenes.values())
    assert sources.fetch(work, scenes, [tmp_path / "mirror"]) == 2 * 40
    first = sources.local_path(work, scenes[0].source, "seq/input/in000000.png")
    assert hashlib.sha256(first.read_bytes()).hexdigest() == scenes[0].source.files()["seq/input/in000000.png"]


@pytest.mark.slow
def test_download_checks_each_file_against_its_pin(tmp_path: Path) -> None:
    manifest = _fake_manifest(tmp_path)
    source = manifest.sources["fake"]
    served = tmp_path / "served" / "owner" / "fake" / source.commit  # <base>/<owner>/<name>/<commit>/<path>
    served.parent.mkdir(parents=True)
    (tmp_path / "copy" / "owner+fake").rename(served)
    scenes = list(manifest.scenes.values())
    with Loopback(tmp_path / "served") as base:
        assert sources.fetch(tmp_path / "work", scenes, [], base) == 2 * 40
        (served / "seq" / "groundtruth" / "gt000005.png").write_bytes(b"tampered")
        with pytest.raises(sources.FootageError, match=r"gt000005.png: sha256 .* is not the pinned"):
            sources.fetch(tmp_path / "again", scenes, [], base)
        (served / "seq" / "groundtruth" / "gt000005.png").unlink()
        with pytest.raises(sources.FootageError, match=r"HTTP 404.*--from DIR"):
            sources.fetch(tmp_path / "again", scenes, [], base)


def test_prepare_splits_in_time_and_writes_capture_style_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = _fake_manifest(tmp_path)
    work = tmp_path / "work"
    case = manifest.cases["fake"]
    sources.fetch(work, [case.scene], [tmp_path / "copy"])
    monkeypatch.setattr(prepare, "PER_CLASS", 6)
    done = prepare.prepare(work, case)
    # frames 0-19 train, 20-39 measured; present when n % 4 < 2 (the square is in the region), 0 and 1 left out (a sliver)
    assert done.train == {"absent": 6, "present": 6}
    assert done.later == {"absent": 10, "present": 10}
    assert done.labels == {"absent": 20, "present": 18, "excluded": 2}
    root = prepare.folder(work, case) / "train"
    assert json.loads((root / "capture.json").read_text())["roi"] == pytest.approx([0.3, 0.3, 0.4, 0.4])
    for cls in prepare.CLASSES:
        files = sorted((root / cls).iterdir())
        times = [f.stat().st_mtime for f in files]
        assert times == sorted(times) and max(times) < prepare.capture_time(case.scene, case.test_from)
        with Image.open(files[0]) as image:
            assert image.size == (128, 128) and image.format == "JPEG"
    frames, labels, numbers = prepare.later_frames(work, case)
    assert frames.shape == (20, 128, 128, 3) and frames.dtype == np.uint8
    assert list(numbers) == list(range(20, 40)) and list(labels) == [int(n % 4 < 2) for n in numbers]
    # The region as the daemon crops it: the fake object fills the whole region, so present frames are bright.
    assert frames[labels == 1].mean() > 200 > 50 > frames[labels == 0].mean()
    stamp = (prepare.folder(work, case) / "case.json").stat().st_mtime_ns
    prepare.prepare(work, case)
    assert (prepare.folder(work, case) / "case.json").stat().st_mtime_ns == stamp  # cached


def test_the_table_marks_autos_choice_both_kernels_and_failures(tmp_path: Path) -> None:
    case = _fake_manifest(tmp_path).cases["fake"]
    prep = prepare.Prepared("fake", (0.3, 0.3, 0.4, 0.4), {"absent": 20, "present": 18, "excluded": 2}, {"absent": 6, "present": 6},
                            {"absent": 10, "present": 10}, (2, 19), (20, 39))  # fmt: skip
    trained = {
        run.Job(case, "features"): {"chosen": "features", "report_held_out": 100.0, "exit": 0},
        run.Job(case, "change"): {"chosen": None, "report_held_out": None, "exit": 65, "failed": "error: the scale is wrong"},
        run.Job(case, "auto"): {"chosen": "features", "report_held_out": 100.0, "exit": 0},
    }
    result = {"reference": {"accuracy": 95.0, "false_present": 0.0, "miss": 10.0}, "xnnpack": {"accuracy": 90.0, "false_present": 0.0, "miss": 20.0}}
    results = {run.Job(case, "features"): result, run.Job(case, "auto"): result}
    text = run.table([(case, prep)], ("features", "change", "auto"), trained, results)
    rows = text.splitlines()
    assert rows[2].startswith("| fake scene: 10 / 10 | features | 100.0 | 95.0 (90.0) | 0.0 | 10.0 (20.0) |")
    assert "failed (exit 65): error: the scale is wrong" in rows[3]
    assert rows[4].startswith("|  | **auto** (features) |")
    assert (
        run.verdict(case, ("features", "change", "auto"), trained, results)
        == "- fake: best on the later frames features 95.0; auto took features: 95.0"
    )


def test_cli_lists_cases_and_names_an_unknown_one() -> None:
    env = os.environ | {"PYTHONPATH": str(REPO)}
    listed = subprocess.run(
        [sys.executable, "-m", "benchmarks.footage", "prepare", "--work", "/nonexistent", "--list"], capture_output=True, text=True, env=env
    )
    assert listed.returncode == 0 and "corridor:" in listed.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "benchmarks.footage", "fetch", "--work", "/nonexistent", "--cases", "moon"], capture_output=True, text=True, env=env
    )
    assert bad.returncode == 65 and "no case moon" in bad.stderr


def _fake_manifest(tmp: Path, git: bool = False) -> sources.Manifest:
    """A 40-frame 160x160 scene in a local copy (tmp/copy/owner+fake): a bright 64 px square over the
    region in frames n % 4 < 2 (frames 0 and 1 show only a sliver), pinned like the real ones."""
    copy = tmp / "copy" / "owner+fake"
    files: dict[str, bytes] = {}
    for n in range(40):
        frame = np.full((SIDE, SIDE, 3), 30, np.uint8)
        mask = np.zeros((SIDE, SIDE), np.uint8)
        if n % 4 < 2:
            at = 48 if n >= 2 else 110  # frames 0 and 1: only the square's corner reaches into the region (4 px)
            frame[at : at + 64, at : at + 64] = 250
            mask[at : at + 64, at : at + 64] = 255
        files[f"seq/input/in{n:06d}.png"] = _png(frame)
        files[f"seq/groundtruth/gt{n:06d}.png"] = _png(mask)
    for path, data in files.items():
        (copy / path).parent.mkdir(parents=True, exist_ok=True)
        (copy / path).write_bytes(data)
    commit = "0" * 40
    if git:
        git_dir = tmp / "mirror" / "owner+fake" / "repo"
        run_git = functools.partial(subprocess.run, check=True, capture_output=True, cwd=copy)
        run_git(["git", "init", "-q", "--bare", str(git_dir)])
        env = os.environ | {"GIT_DIR": str(git_dir), "GIT_WORK_TREE": str(copy)} | _git_identity()
        run_git(["git", "add", "-A"], env=env)
        run_git(["git", "commit", "-q", "-m", "footage"], env=env)
        commit = run_git(["git", "rev-parse", "HEAD"], env=env).stdout.decode().strip()
    sums = tmp / "fake.sha256"
    sums.write_text("".join(f"{hashlib.sha256(d).hexdigest()}  {p}\n" for p, d in sorted(files.items())))
    source = {"repo": "owner/fake", "commit": commit, "sums": str(sums), "benchmark": "fake", "cite": "-", "terms": "-"}
    scene = {
        "name": "fake", "title": "fake scene", "source": "fake", "input": "seq/input/in{n:06d}.png",
        "groundtruth": "seq/groundtruth/gt{n:06d}.png", "first": 0, "last": 39, "size": [SIDE, SIDE], "region": [48, 48, 64], "fps": 4,
    }  # fmt: skip
    path = tmp / "scenes.json"
    path.write_text(json.dumps({"sources": {"fake": source}, "scenes": [scene]}))
    return sources.load(path)


def _png(pixels: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def _git_identity() -> dict[str, str]:
    who = {"NAME": "footage test", "EMAIL": "footage@test.invalid"}
    return {f"GIT_{role}_{k}": v for role in ("AUTHOR", "COMMITTER") for k, v in who.items()}


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class Loopback:
    """A loopback HTTP server over a folder, for the duration of a with-block; yields its base URL."""

    def __init__(self, root: Path) -> None:
        handler = functools.partial(_Quiet, directory=str(root))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)

    def __enter__(self) -> str:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
