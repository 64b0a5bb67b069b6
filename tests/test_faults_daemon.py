"""The daemon riding out faults of its sources, its snapshot folder and its reloads: nothing lost, each said once."""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.daemon import NotifySocket, base_config, running, write_config
from tests.support.faults import cli, free_bytes, model, small_disk

__all__ = ["model", "small_disk"]  # fixtures

FRAMES = 60


def clip(path: Path, damaged_packets: tuple[int, ...] = ()) -> Path:
    """A 60-frame MPEG-4 clip (PyAV); the packets listed get 6 KB of garbage over their start."""
    import av

    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for i in range(FRAMES):
            image = np.full((240, 320, 3), (i * 4) % 255, np.uint8)
            image[::7] = rng.integers(0, 255, (35, 320, 3))
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    if damaged_packets:
        with av.open(str(path)) as container:
            offsets = [p.pos for p in container.demux(container.streams.video[0]) if p.size]
        data = bytearray(path.read_bytes())
        garbage = np.random.default_rng(1).integers(0, 256, 6144, dtype=np.uint8).tobytes()
        for i in damaged_packets:
            data[offsets[i] : offsets[i] + len(garbage)] = garbage
        path.write_bytes(bytes(data))
    return path


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.slow
def test_a_damaged_packet_is_skipped_and_the_rest_of_the_file_classified(tmp_path: Path, model: Path) -> None:
    """6 KB of garbage in a 60-frame MPEG-4 ended the run (exit 69) after 18 frames; 42 were never classified."""
    video = clip(tmp_path / "damaged.mp4", damaged_packets=(18,))
    data = base_config(tmp_path, model)
    data["source"] = {"kind": "video", "video": {"url": str(video)}}
    run = cli("run", "--config", str(write_config(tmp_path / "c.toml", data)))
    assert run.returncode == 0, run.stderr
    assert FRAMES - 6 <= len(records(tmp_path / "results.jsonl")) < FRAMES  # the packets the garbage covers, and no more
    warnings = [line for line in run.stderr.splitlines() if "skipped a damaged packet" in line]
    assert warnings and "1 skipped so far" in warnings[0] and len(warnings) <= 3, run.stderr
    assert "'damaged': " in run.stderr.rpartition("final stats")[2] and "Traceback" not in run.stderr


def snapshot_config(tmp_path: Path, model: Path, shared: Path, folder: Path, **snapshots: Any) -> dict[str, Any]:
    data = base_config(tmp_path, model)
    data["source"] = {"kind": "images", "images": {"path": str(shared / "data" / "samples"), "loop": True}, "max_fps": 20.0}
    data["results"] = {"groups": ["bird", "animal"], "publish": "every", "smoothing": "none"}
    data["snapshots"] = {"enabled": True, "path": str(folder), **snapshots}
    return data


def named_but_missing(folder: Path, recs: list[dict[str, Any]]) -> list[str]:
    return [r["snapshot"] for r in recs if "snapshot" in r and not (folder / r["snapshot"]).is_file()]


@pytest.mark.slow
def test_records_name_only_snapshots_that_were_written(tmp_path: Path, model: Path, shared: Path, small_disk: Path) -> None:
    """On a full disk 8 of 8 records named a snapshot file that was never written."""
    full = small_disk / "snap"
    full.mkdir()
    (small_disk / "filler").write_bytes(b"\0" * free_bytes(small_disk))
    data = snapshot_config(tmp_path, model, shared, full)
    run = cli("run", "--config", str(write_config(tmp_path / "c.toml", data)), "--max-frames", "40")
    assert run.returncode == 0, run.stderr
    recs = records(tmp_path / "results.jsonl")
    assert len(recs) == 40 and not [r for r in recs if "snapshot" in r], recs[:3]
    assert f"snapshots: {full} has" in run.stderr and "no record names a snapshot until one can be written" in run.stderr
    assert "no room " in run.stderr.rpartition("final stats")[2]
    # A view too large for the caps: the snapshot is saved without it, and every named file is there.
    small = tmp_path / "small-caps"
    data = snapshot_config(tmp_path, model, shared, small, max_bytes=100_000, max_side=4096, quality=95)
    run = cli("run", "--config", str(write_config(tmp_path / "c.toml", data)), "--max-frames", "40")
    assert run.returncode == 0, run.stderr
    named = [r["snapshot"] for r in records(tmp_path / "results.jsonl")[40:] if "snapshot" in r]
    final = re.search(r"snapshots: saved (\d+), .*, errors (\d+)", run.stderr.rpartition("final stats")[2])
    assert named and final is not None, run.stderr
    saved, errors = map(int, final.groups())
    assert saved == len(named) and errors == 0 and (small / named[-1]).is_file()  # older ones went for the caps (dropped)
    assert "does not fit snapshots.max_bytes (100000); saved without it" in run.stderr


def test_a_snapshot_folder_deleted_while_running_is_made_again(tmp_path: Path, model: Path, shared: Path) -> None:
    """Snapshots stopped until a restart; the one warning named a temp file, not the missing folder."""
    import shutil

    folder = tmp_path / "snap"
    config = write_config(tmp_path / "c.toml", snapshot_config(tmp_path, model, shared, folder))
    with running(config, notify=NotifySocket(tmp_path / "notify")) as proc:
        deadline = time.monotonic() + 30
        while not folder.is_dir() or not list(folder.glob("*.json")):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        folder.rename(tmp_path / "deleted")  # gone from its path at once (the writer may be writing into it)
        shutil.rmtree(tmp_path / "deleted", ignore_errors=True)
        before = len(records(tmp_path / "results.jsonl"))
        while not [r for r in records(tmp_path / "results.jsonl")[before:] if (folder / r.get("snapshot", "-")).is_file()]:
            assert proc.poll() is None and time.monotonic() < deadline, "snapshots did not come back"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    stderr = proc.stderr.read() if proc.stderr else ""
    assert f"snapshots: the folder {folder} was gone; made it again" in stderr, stderr
    assert ".tmp" not in stderr
    later = records(tmp_path / "results.jsonl")[before:]
    assert [r for r in later if "snapshot" in r] and named_but_missing(folder, later) == []


@pytest.mark.slow
def test_a_reload_to_a_source_that_cannot_open_keeps_the_running_one(tmp_path: Path, model: Path) -> None:
    """SIGHUP to a 0-byte video released the old source first, then exited 69 (and systemd restarted it into the same failure)."""
    notify = NotifySocket(tmp_path / "notify")
    data = base_config(tmp_path, model, fps=20.0)
    config = write_config(tmp_path / "c.toml", data)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with running(config, notify=notify) as proc:
        notify.wait_for("READY=1")
        write_config(config, {**data, "source": {"kind": "video", "video": {"url": str(empty)}}})
        t = time.monotonic()
        proc.send_signal(signal.SIGHUP)
        reloading = notify.wait_for("RELOADING=1", after=t)
        notify.wait_for("READY=1", after=reloading)
        before = len(records(tmp_path / "results.jsonl"))
        time.sleep(0.5)
        assert proc.poll() is None and len(records(tmp_path / "results.jsonl")) > before
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    stderr = proc.stderr.read() if proc.stderr else ""
    assert f"reload failed, still running the previous configuration: video:{empty}: cannot open" in stderr, stderr
    seqs = [r["seq"] for r in records(tmp_path / "results.jsonl")]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))


def test_the_published_snapshot_is_a_jpeg_even_without_a_view(tmp_path: Path) -> None:
    """A frame without a larger view (the synthetic source, a view that failed) published its record JSON as the image."""
    from edge.config import SnapshotsConfig, parse
    from edge.daemon.snapshots import SnapshotWriter
    from edge.record import Record
    from edge.sources import Frame

    published: list[bytes] = []
    writer = SnapshotWriter(parse({"enabled": True, "path": str(tmp_path / "snap")}, SnapshotsConfig), published.append)
    writer.open()
    try:
        name = writer.claim(True, 1, 1e9, 1.0)
        writer.take(Record(1, 1e9, 1e9, "cam", "x", (), 0.0, "", "bird", (), name), Frame(np.zeros((128, 128, 3), np.uint8), 1e9, "x"))
        assert writer.flush(30)
    finally:
        writer.close()
    assert len(published) == 1 and published[0][:3] == b"\xff\xd8\xff", published[0][:20]


def test_a_file_in_the_way_of_the_snapshot_folder_is_named(tmp_path: Path, model: Path) -> None:
    """`run` with a file where snapshots.path must be a folder said "File exists"."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file\n")
    data = base_config(tmp_path, model, frames=2)
    data["snapshots"] = {"enabled": True, "path": str(blocker / "snap")}
    run = cli("run", "--config", str(write_config(tmp_path / "c.toml", data)))
    assert run.returncode == 73 and f"snapshots.path: cannot use {blocker / 'snap'} ({blocker} is a file, not a folder)" in run.stderr, run.stderr
    assert "File exists" not in run.stderr
