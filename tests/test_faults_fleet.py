"""`mnv1-edge fleet` against what a broker may hold: malformed, huge or wrong-typed payloads are ignored and counted."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.fleet.state import Fleet
from edge.fleet.table import render_json, render_table
from tests.support.broker import Mosquitto
from tests.support.daemon import EXE
from tests.test_fleet import publish_retained, stats

DEEP = "[" * 100_000  # json.loads raises RecursionError, not ValueError


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    with Mosquitto(tmp_path / "broker") as b:
        yield b


def test_payloads_of_any_shape_are_ignored_and_counted() -> None:
    now = time.time()
    fleet = Fleet("mnv1-edge")
    fleet.handle("mnv1-edge/deep/stats", DEEP.encode(), True, now)
    fleet.handle("mnv1-edge/huge/stats", json.dumps({"fps": 1.0, "pad": "x" * 5_000_000}).encode(), True, now)
    fleet.handle("mnv1-edge/list/classification", b"[1, 2]", True, now)
    weird = {
        "fps": "fast",
        "inference_ms": [1],
        "dropped": float("inf"),
        "heartbeat_s": "soon",
        "stats_interval_s": True,
        "ts": "x" * 1_000_000,
        "version": "1.0\n\x1b[2Jgotcha",
        "source": {"view_off": 1, "view_shift_px": "far\nfar"},
    }
    fleet.handle("mnv1-edge/weird/availability", b"online", True, now)
    fleet.handle("mnv1-edge/weird/stats", json.dumps(weird).encode(), False, now)
    fleet.handle("mnv1-edge/weird/classification", json.dumps({"answer": "bird\n" * 100_000, "seq": "x"}).encode(), False, now)
    assert fleet.ignored == 3
    rows = {r.device_id: r for r in fleet.rows(now)}
    assert rows["weird"].status == "moved" and rows["weird"].fps is None and rows["weird"].dropped is None
    assert rows["weird"].answer is not None and len(rows["weird"].answer) <= 200
    table = render_table(fleet.rows(now), fleet.ignored)
    assert len(table.splitlines()) == 1 + len(rows) + 1, table  # one line per device
    assert "\x1b" not in table and table.endswith("; 3 messages ignored (not a JSON object, over 1 MiB or nested too deeply)")


def test_an_availability_that_is_neither_online_nor_offline_is_unknown() -> None:
    """A retained availability `garbage` showed the device online and ok."""
    now = time.time()
    fleet = Fleet("mnv1-edge")
    fleet.handle("mnv1-edge/cam/availability", b"garbage", True, now)
    fleet.handle("mnv1-edge/cam/stats", json.dumps(stats(now)).encode(), True, now)
    row = fleet.rows(now)[0]
    assert (row.status, row.ok, row.reason) == ("unknown", False, "availability says 'garbage', not online or offline")


def test_the_json_view_stays_json() -> None:
    """Stats with stats_interval_s 1e308 printed Infinity in --json (not JSON)."""
    now = time.time()
    fleet = Fleet("mnv1-edge")
    fleet.handle("mnv1-edge/cam/availability", b"online", True, now)
    fleet.handle("mnv1-edge/cam/stats", json.dumps(stats(now, stats_interval_s=1e308)).encode(), True, now)
    text = render_json(fleet.rows(now), "h:1883", "mnv1-edge")
    doc = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in {text}"))
    assert doc["devices"][0]["stale_after_s"] == 30 * 86400.0


def test_one_malformed_retained_message_does_not_blind_the_watch(broker: Mosquitto) -> None:
    """A retained stats of 100,000 nested [ killed paho's network thread: --watch kept printing a frozen
    view, and a device that came online later never appeared (exit 0)."""
    now = time.time()
    publish_retained(broker.port, {"mnv1-edge/bad/stats": DEEP, "mnv1-edge/cam-1/availability": "online", "mnv1-edge/cam-1/stats": stats(now)})
    cmd = [EXE, "fleet", "--broker", f"127.0.0.1:{broker.port}", "--wait", "0.5", "--watch", "--interval", "0.2", "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        publish_retained(broker.port, {"mnv1-edge/cam-2/availability": "online", "mnv1-edge/cam-2/stats": stats(time.time())})
        deadline = time.monotonic() + 20
        doc: dict[str, Any] = first
        while "cam-2" not in {d["device_id"] for d in doc["devices"]}:
            assert time.monotonic() < deadline, doc
            doc = json.loads(proc.stdout.readline())
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=10)  # read on: a full pipe would hold its last write (and the exit)
        assert proc.returncode == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in stderr, stderr
    assert first["ignored"] == 1 and doc["ignored"] == 1


def test_json_written_by_the_daemon_and_fleet_has_no_nan_or_infinity() -> None:
    from edge import jsontext

    text = jsontext.dumps({"fps": float("inf"), "p": [float("nan"), 1.5], "n": {"x": -float("inf")}})
    assert json.loads(text) == {"fps": None, "p": [None, 1.5], "n": {"x": None}}
