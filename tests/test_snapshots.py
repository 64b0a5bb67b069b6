"""Evidence snapshots: one per answer change on the sample photos, a folder that stays under its caps, the MQTT image."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import paho.mqtt.client as mqtt
import pytest
from PIL import Image

from edge import paths
from edge.config import SnapshotsConfig, parse
from edge.daemon.snapshots import SnapshotWriter, stem_for
from tests.support import ha_schema
from tests.support.broker import Mosquitto
from tests.support.daemon import EXE, write_config
from tests.support.mqtt_clients import wait_until

PREFIX = "mnv1-edge/cam/"


@pytest.fixture(scope="module")
def model(request: pytest.FixtureRequest) -> Path:
    """Our converted model when it has been built, else Google's with a manifest (same contract)."""
    name = "converted_model" if paths.default_model().is_file() else "reference_model"
    return Path(request.getfixturevalue(name))


def config(tmp_path: Path, model: Path, shared: Path, *, loop: bool = False, **snapshots: Any) -> dict[str, Any]:
    return {
        "device_id": "cam",
        "state_dir": str(tmp_path / "state"),
        "stats_interval_s": 0.5,
        "model": {"path": str(model)},
        "source": {"kind": "images", "images": {"path": str(shared / "data" / "samples"), "loop": loop}},
        # publish = every: each frame is published, so the records show which ones changed the answer.
        "results": {"groups": ["bird", "animal"], "publish": "every", "smoothing": "none"},
        "sinks": {"stdout": {"enabled": True}, "file": {"enabled": False}},
        "snapshots": {"enabled": True, "path": str(tmp_path / "snap"), **snapshots},
    }


def run(tmp_path: Path, data: dict[str, Any], *args: str) -> list[dict[str, Any]]:
    proc = subprocess.run([EXE, "run", "--config", str(write_config(tmp_path / "c.toml", data)), *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def changes(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records whose answer differs from the one before (the first one included)."""
    return [r for i, r in enumerate(records) if i == 0 or r["answer"] != records[i - 1]["answer"]]


def folder(path: Path) -> list[str]:
    return sorted(os.listdir(path))


def jpeg(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG"
    image.load()  # decodes the whole file: a truncated one raises
    return image


@pytest.mark.slow
def test_one_snapshot_per_change_on_the_sample_photos(tmp_path: Path, model: Path, shared: Path) -> None:
    records = run(tmp_path, config(tmp_path, model, shared, max_side=320))
    changed = changes(records)
    assert len(records) == 8 and 3 <= len(changed) < 8  # the photos change the answer, but not on every one
    assert [r for r in records if "snapshot" in r] == changed

    snap = tmp_path / "snap"
    names = folder(snap)
    assert not [n for n in names if n.startswith(".")]  # no temp file left behind
    assert len(names) == 3 * len(changed)
    for record in changed:
        stem = record["snapshot"].removesuffix(".jpg")
        assert re.fullmatch(r"\d{8}T\d{9}Z-" + str(record["seq"]), stem)  # UTC time to the ms, then the seq
        assert jpeg((snap / record["snapshot"]).read_bytes()).size == (128, 128)  # the model's input
        view = jpeg((snap / f"{stem}-view.jpg").read_bytes())  # the whole photo, scaled down
        assert max(view.size) <= 320 and view.size != (128, 128)
        assert json.loads((snap / f"{stem}.json").read_text()) == record
    # cat_720p.jpg (1280x720) keeps its aspect ratio in its view.
    wide = [r for r in changed if r["source"] == "cat_720p.jpg"]
    if wide:
        assert jpeg((snap / wide[0]["snapshot"].replace(".jpg", "-view.jpg")).read_bytes()).size == (320, 180)


class Watcher:
    """Polls a folder in a thread: the most files and bytes it ever held (temp files included)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.most_files = self.most_bytes = self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            files, size = 0, 0
            try:
                entries = list(os.scandir(self.path))
            except FileNotFoundError:
                entries = []
            for entry in entries:
                try:
                    size += entry.stat().st_size
                    files += 1
                except FileNotFoundError:  # deleted between the listing and the stat
                    pass
            self.most_files, self.most_bytes = max(self.most_files, files), max(self.most_bytes, size)
            self.polls += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.mark.slow
def test_the_folder_never_exceeds_its_caps(tmp_path: Path, model: Path, shared: Path) -> None:
    snap = tmp_path / "snap"
    snap.mkdir()
    (snap / "notes.txt").write_text("not ours: never counted, never deleted\n")
    # A temp file of an interrupted write_atomic from an earlier run: removed at start.
    (snap / ".20261129T080000000Z-3.jpg.k2j4h5.tmp").write_bytes(b"\xff\xd8 torn")
    caps = {"max_files": 8, "max_bytes": 200_000}
    watcher = Watcher(snap)
    try:
        records = run(tmp_path, config(tmp_path, model, shared, loop=True, **caps), "--max-frames", "120")
    finally:
        watcher.stop()
    changed = changes(records)
    assert len(records) == 120 and len(changed) > 20 and [r for r in records if "snapshot" in r] == changed
    notes = len("not ours: never counted, never deleted\n")
    assert watcher.polls > 10 and watcher.most_files <= caps["max_files"] + 1 and watcher.most_bytes <= caps["max_bytes"] + notes

    names = folder(snap)
    assert "notes.txt" in names and not [n for n in names if n.startswith(".")]
    kept = [n for n in names if n != "notes.txt"]
    assert 0 < len(kept) <= caps["max_files"] and sum((snap / n).stat().st_size for n in kept) <= caps["max_bytes"]
    # The newest snapshots are the ones kept, each whole.
    stems = {n.removesuffix("-view.jpg").removesuffix(".jpg").removesuffix(".json") for n in kept}
    assert stems == {r["snapshot"].removesuffix(".jpg") for r in changed[-len(stems) :]}
    assert all(f"{s}.jpg" in kept and f"{s}.json" in kept and f"{s}-view.jpg" in kept for s in stems)

    # Smaller caps at the next start shrink what an earlier run left.
    run(tmp_path, config(tmp_path, model, shared, max_files=3, max_bytes=200_000), "--max-frames", "1")
    assert len(folder(snap)) == 1 + 3


def test_every_s_adds_snapshots_between_changes(tmp_path: Path) -> None:
    """The writer's decision alone, on given times (no clock in the test)."""
    writer = SnapshotWriter(parse({"enabled": True, "path": str(tmp_path), "every_s": 10.0}, SnapshotsConfig))
    assert writer.claim(True, 1, 1e9, now=100.0) == stem_for(1, 1e9) + ".jpg"
    assert writer.claim(False, 2, 1e9, now=105.0) is None
    assert writer.claim(False, 3, 1e9, now=110.0) is not None
    assert writer.claim(True, 4, 1e9, now=111.0) is not None  # a change is always due
    off = SnapshotWriter(parse({"enabled": True, "path": str(tmp_path)}, SnapshotsConfig))
    assert off.claim(True, 1, 1e9, now=0.0) is not None and off.claim(False, 2, 1e9, now=1e6) is None


def test_a_video_frame_has_a_view_made_on_demand() -> None:
    from edge.sources.still import av_still

    frame = av.VideoFrame.from_ndarray(np.full((720, 1280, 3), 200, np.uint8), format="rgb24").reformat(format="yuv420p")
    image = av_still(frame, 640)
    assert image.size == (640, 360) and image.mode == "RGB" and abs(int(np.asarray(image).mean()) - 200) <= 2


@pytest.mark.slow
def test_bad_settings_are_one_line_errors(tmp_path: Path, model: Path, shared: Path) -> None:
    data = config(tmp_path, model, shared, max_files=2)
    proc = subprocess.run([EXE, "run", "--config", str(write_config(tmp_path / "c.toml", data))], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 78 and "snapshots.max_files: must be at least 3, got 2" in proc.stderr

    (tmp_path / "file").write_text("")
    data = config(tmp_path, model, shared, path=str(tmp_path / "file" / "snap"))
    proc = subprocess.run([EXE, "run", "--config", str(write_config(tmp_path / "c.toml", data))], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "snapshots.path: cannot use" in proc.stderr and "Traceback" not in proc.stderr


# --- MQTT and Home Assistant ------------------------------------------------------------------------


def retained(port: int, topics: list[str], settle: float = 0.5) -> dict[str, bytes]:
    """What the broker retains under these topic filters: what a fresh subscriber gets flagged as retained."""
    got: dict[str, bytes] = {}
    lock = threading.Lock()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)

    def on_message(c: Any, u: Any, message: mqtt.MQTTMessage) -> None:
        if message.retain:
            with lock:
                got[message.topic] = bytes(message.payload)

    client.on_connect = lambda c, *_: [c.subscribe(t, qos=1) for t in topics]
    client.on_message = on_message
    client.connect("127.0.0.1", port, keepalive=10)
    client.loop_start()
    try:
        time.sleep(settle)
        with lock:
            return dict(got)
    finally:
        client.disconnect()
        client.loop_stop()


def has(messages: dict[str, bytes], *filters: str) -> bool:
    return all(any(mqtt.topic_matches_sub(f, t) for t in messages) for f in filters)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_the_newest_snapshot_is_retained_on_mqtt_for_home_assistant(
    tmp_path: Path, model: Path, shared: Path, broker: Mosquitto, daemon: list[subprocess.Popen[str]]
) -> None:
    data = config(tmp_path, model, shared, loop=True)
    data["source"]["max_fps"] = 10.0
    mqtt_keys = {
        "enabled": True,
        "port": broker.port,
        "spool": {"path": str(tmp_path / "spool")},
        "homeassistant": {"enabled": True},
        "stats_interval_s": 0.5,
    }
    data["sinks"] = {"mqtt": mqtt_keys, "file": {"enabled": False}}
    path = write_config(tmp_path / "c.toml", data)
    with (tmp_path / "daemon.log").open("w") as log:  # a file, not a pipe nobody reads while it runs
        proc = subprocess.Popen([EXE, "run", "--config", str(path)], stdout=subprocess.DEVNULL, stderr=log, text=True)
    daemon.append(proc)
    topics = [PREFIX + "snapshot", PREFIX + "stats", "homeassistant/+/mnv1_edge_cam/+/config"]
    wait_until(lambda: has(retained(broker.port, topics), *topics), 30, f"retained {topics}")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    assert "Traceback" not in (tmp_path / "daemon.log").read_text()

    got = retained(broker.port, topics)
    image = jpeg(got[PREFIX + "snapshot"])
    assert max(image.size) <= 640 and image.size != (128, 128)  # the larger view
    views = {p.read_bytes() for p in (tmp_path / "snap").glob("*-view.jpg")}
    assert got[PREFIX + "snapshot"] in views  # exactly a JPEG the writer saved
    stats = json.loads(got[PREFIX + "stats"])  # the last ones, published at the stop
    assert stats["snapshots_saved"] > 0 and stats["snapshots_errors"] == 0 and stats["mqtt_snapshots"] > 0

    # Home Assistant's own discovery code accepts every announced entity, the image one included.
    configs = sorted((t, p.decode()) for t, p in got.items() if t.endswith("/config"))
    image_topic = "homeassistant/image/mnv1_edge_cam/snapshot/config"
    assert image_topic in dict(configs)
    report = ha_schema.check(configs)
    assert all(v.clean for v in report.verdicts), [(v.topic, v.error, v.ignored) for v in report.verdicts if not v.clean]
    image_entity = report.by_topic()[image_topic]
    assert image_entity.component == "image" and (image_entity.config or {})["image_topic"] == PREFIX + "snapshot"


def test_a_failed_view_or_write_is_counted_and_the_daemon_goes_on(tmp_path: Path) -> None:
    from functools import partial

    from edge.record import Record
    from edge.sources import Frame
    from edge.sources.still import file_still

    writer = SnapshotWriter(parse({"enabled": True, "path": str(tmp_path / "snap")}, SnapshotsConfig))
    writer.open()
    try:
        pixels = np.zeros((128, 128, 3), np.uint8)
        for seq, view in enumerate((partial(file_still, tmp_path / "gone.jpg"), None)):
            name = writer.claim(True, seq, 1e9, float(seq))
            writer.take(Record(seq, 1e9, 1e9, "cam", "x", (), 0.0, "", "bird", (), name), Frame(pixels, 1e9, "x", still=view))
            assert writer.flush(30)
        # The photo vanished before its view was made: the input and the record are saved all the same.
        assert writer.stats().to_dict() | {"snapshots_bytes": 0} == {
            **{f"snapshots_{k}": 0 for k in ("dropped", "skipped", "no_room", "errors", "bytes")},
            **{"snapshots_saved": 2, "snapshots_view_errors": 1, "snapshots_files": 4},
        }
        for child in (tmp_path / "snap").iterdir():
            child.unlink()
        (tmp_path / "snap").rmdir()  # the folder removed under the daemon: made again, the snapshot saved
        name = writer.claim(True, 2, 1e9, 2.0)
        assert name is not None
        writer.take(Record(2, 1e9, 1e9, "cam", "x", (), 0.0, "", "bird", (), name), Frame(pixels, 1e9, "x"))
        assert writer.flush(30) and writer.stats().errors == 0 and (tmp_path / "snap" / name).is_file()
        assert writer.stats().files == 2  # what the deleted folder held is forgotten
    finally:
        writer.close()


@pytest.mark.slow
def test_a_reload_turns_snapshots_on(tmp_path: Path, model: Path, shared: Path) -> None:
    data = config(tmp_path, model, shared, loop=True)
    data["snapshots"]["enabled"] = False
    data["source"]["max_fps"] = 50.0
    data["sinks"] = {"file": {"path": str(tmp_path / "results.jsonl"), "fsync": "never"}}
    path = write_config(tmp_path / "c.toml", data)
    results = tmp_path / "results.jsonl"
    with (tmp_path / "daemon.log").open("w") as log:
        proc = subprocess.Popen([EXE, "run", "--config", str(path)], stdout=subprocess.DEVNULL, stderr=log, text=True)
    try:
        wait_until(lambda: results.exists() and len(results.read_text().splitlines()) > 10, 30, "records")
        data["snapshots"]["enabled"] = True
        write_config(path, data)
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: (tmp_path / "snap").is_dir() and len(folder(tmp_path / "snap")) >= 9, 30, "snapshots after the reload")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "reloaded:" in (tmp_path / "daemon.log").read_text()
    records = [json.loads(line) for line in results.read_text().splitlines()]
    first = next(i for i, r in enumerate(records) if "snapshot" in r)
    after = records[first - 1 :]
    # From the first snapshot on (a change after the reload), exactly the changes carry one, each a saved file.
    assert first > 10 and [r for r in after[1:] if "snapshot" in r] == changes(after)[1:]
    assert all((tmp_path / "snap" / r["snapshot"]).is_file() for r in after if "snapshot" in r)
