"""`mnv1-edge fleet`: the status rules, the table, and the command against a real mosquitto with real daemons."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge import paths
from edge.commands.fleet import parse_broker
from edge.config import ConfigError
from edge.fleet.state import Fleet, Row, message_time
from edge.fleet.table import render_json, render_table
from edge.record import rfc3339
from tests.support.broker import Mosquitto, free_port
from tests.support.daemon import EXE, write_config

MJPEG_SERVER = Path(__file__).parent / "system" / "mjpeg_server.py"
SHA = "0123456789abcdef" * 4


def stats(at: float, **extra: Any) -> dict[str, Any]:
    """A stats payload as the MQTT sink publishes it (the daemon's snapshot merged with the sink's counters)."""
    return {
        "device_id": "x",
        "version": "0.9.0",
        "ts": rfc3339(at),
        "window_s": 10.0,
        "last_frame_age_s": 0.1,
        "fps": 9.5,
        "frames": 100,
        "inference_ms": {"p50": 2.25, "p95": 3.0},
        "dropped": 3,
        "spool_depth": 2,
        "spool_dropped": 1,
        **extra,
    }


def result(at: float, **extra: Any) -> dict[str, Any]:
    top = [{"class_index": 281, "label": "tabby", "score": 0.7}]
    return {"v": 1, "seq": 5, "ts": rfc3339(at), "device_id": "x", "top_k": top, "model_sha256": SHA, **extra}


def feed(fleet: Fleet, device: str, now: float, availability: str | None = "online", st: Any = None, rec: Any = None) -> None:
    if availability is not None:
        fleet.handle(f"mnv1-edge/{device}/availability", availability.encode(), True, now)
    if st is not None:
        fleet.handle(f"mnv1-edge/{device}/stats", json.dumps(st).encode(), True, now)
    if rec is not None:
        fleet.handle(f"mnv1-edge/{device}/classification", json.dumps(rec).encode(), True, now)


def by_id(rows: list[Row]) -> dict[str, Row]:
    return {r.device_id: r for r in rows}


def test_status_rules() -> None:
    now = time.time()
    fleet = Fleet("mnv1-edge")
    feed(fleet, "good", now, st=stats(now - 1), rec=result(now - 0.5, answer="cat"))
    feed(fleet, "off", now, "offline", st=stats(now - 1), rec=result(now - 1))
    feed(fleet, "old", now, st=stats(now - 200))  # its last stats are older than the default 180 s
    feed(fleet, "frozen", now, st=stats(now - 1, last_frame_age_s=50.0), rec=result(now - 51))
    feed(fleet, "quiet", now, st=stats(now - 1), rec=result(now - 100))
    feed(fleet, "flagged", now, st=stats(now - 1, stalled=True))
    feed(fleet, "nudged", now, st=stats(now - 1, source={"name": "cam", "view_off": 1, "view_shift_px": 5}), rec=result(now - 0.5))
    feed(fleet, "steady", now, st=stats(now - 1, source={"name": "cam", "view_off": 0, "view_shift_px": 0}), rec=result(now - 0.5))
    feed(fleet, "unlit", now, st=stats(now - 1, source={"name": "cam", "light_off": 1, "light_luma": 31}), rec=result(now - 0.5))
    feed(fleet, "odd", now, st=stats(now - 1, source={"name": "cam", "light_off": 1, "light_luma": "dark\n\x1b[2J"}), rec=result(now - 0.5))
    feed(fleet, "relit", now, st=stats(now - 1, source={"name": "cam", "light_off": 0, "light_luma": 97, "light_changed": 1}), rec=result(now - 0.5))
    feed(fleet, "orphan", now, None, st=stats(now - 1))
    feed(fleet, "new", now)
    rows = by_id(fleet.rows(now, stale_after=None))
    assert rows["old"].status == "stale" and rows["old"].stale_after_s == 180 and "no stats for 200 s" in rows["old"].reason
    assert rows["good"].status == "online" and rows["good"].reason == ""
    rows = by_id(fleet.rows(now, stale_after=30))
    assert {d: r.status for d, r in rows.items()} == {
        "good": "online",
        "off": "offline",
        "old": "stale",
        "frozen": "stalled",
        "quiet": "stale",
        "flagged": "stalled",
        "nudged": "moved",
        "steady": "online",
        "unlit": "light",
        "odd": "light",
        "relit": "online",
        "orphan": "unknown",
        "new": "online",
    }
    assert [d for d, r in rows.items() if r.ok] == ["good", "new", "relit", "steady"]
    assert "not as the model was trained (shift 5 px of 128)" in rows["nudged"].reason
    assert "out of the light the model was trained in (brightness 31 of 255)" in rows["unlit"].reason
    assert "(brightness ? of 255)" in rows["odd"].reason  # a device's own text never reaches the table
    assert rows["frozen"].last_frame_age_s == 51.0  # the stats' figure plus the stats' own age
    assert "no result for 100 s" in rows["quiet"].reason and rows["new"].reason == "no stats yet"
    good = rows["good"]
    assert (good.answer, good.answer_age_s, good.fps, good.inference_p50_ms) == ("cat", 0.5, 9.5, 2.25)
    assert (good.dropped, good.spool_depth, good.spool_dropped, good.model_sha, good.version) == (3, 2, 1, SHA, "0.9.0")
    assert rows["off"].answer == "tabby"  # a record before schema v2: the top-1 label


def test_stale_after_defaults_to_three_stats_intervals_when_the_stats_say_theirs() -> None:
    now = time.time()
    fleet = Fleet("mnv1-edge")
    feed(fleet, "a", now, st=stats(now - 31, stats_interval_s=10))
    feed(fleet, "b", now, st=stats(now - 29, stats_interval_s=10))
    rows = by_id(fleet.rows(now))
    assert (rows["a"].status, rows["a"].stale_after_s, rows["b"].status) == ("stale", 30.0, "online")
    assert by_id(fleet.rows(now, stale_after=60))["a"].status == "online"


def test_message_ages_other_topics_and_bad_payloads() -> None:
    now = time.time()
    fleet = Fleet("mnv1-edge/")
    # A live message without `ts` counts from its arrival; a retained one without `ts` has no age.
    fleet.handle("mnv1-edge/a/stats", json.dumps({"fps": 1.0}).encode(), False, now - 5)
    fleet.handle("mnv1-edge/b/stats", json.dumps({"fps": 1.0}).encode(), True, now - 5)
    fleet.handle("mnv1-edge/c/stats", json.dumps(stats(now + 30)).encode(), True, now)  # a device clock ahead of ours
    fleet.handle("mnv1-edge/d/stats", b"not json", False, now)
    fleet.handle("mnv1-edge/a/b/stats", b"{}", False, now)  # not PREFIX/DEVICE/KIND
    fleet.handle("other/e/stats", b"{}", False, now)
    fleet.handle("mnv1-edge/f/snapshot", b"\xff\xd8", True, now)
    rows = by_id(fleet.rows(now, 60))
    assert sorted(rows) == ["a", "b", "c", "d"] and fleet.ignored == 1
    assert (rows["a"].stats_age_s, rows["b"].stats_age_s, rows["c"].stats_age_s) == (5.0, None, 0.0)
    feed(fleet, "a", now, "offline")
    fleet.handle("mnv1-edge/a/availability", b"", True, now)  # retained availability cleared
    assert by_id(fleet.rows(now, 60))["a"].availability is None


def test_daemon_stats_carry_what_a_late_reader_needs() -> None:
    from edge.daemon.stats import Stats

    st = Stats()
    first = st.snapshot()
    assert first.last_frame_age_s is None and first.window_s >= 0
    made = message_time(first.ts, None)  # the daemon's wall clock, RFC 3339 like the records
    assert made is not None and abs(made - time.time()) < 60
    st.add(2.0, 5.0)
    second = st.snapshot()
    assert second.last_frame_age_s is not None and 0 <= second.last_frame_age_s <= second.window_s + 0.1


def test_table_and_json() -> None:
    now = time.time()
    fleet = Fleet("mnv1-edge")
    feed(fleet, "cam-1", now, st=stats(now - 1), rec=result(now - 150, answer="bird"))
    feed(fleet, "cam-2", now, "offline")
    rows = fleet.rows(now, 300)
    lines = render_table(rows).splitlines()
    header = ["DEVICE", "STATUS", "ANSWER", "AGE", "FPS", "INF", "P50", "DROPPED", "SPOOL", "SPOOL", "DROPS", "MODEL", "VERSION", "NOTE"]
    assert lines[0].split() == header
    assert lines[1].split()[:12] == ["cam-1", "online", "bird", "2m", "9.5", "2.25", "ms", "3", "2", "1", SHA[:8], "0.9.0"]
    assert lines[2].split()[:11] == ["cam-2", "offline", "-", "-", "-", "-", "-", "-", "-", "-", "-"]
    assert lines[3] == "2 devices, 1 ok, 1 not: cam-2"
    doc = json.loads(render_json(rows, "h:1883", "mnv1-edge"))
    assert doc["ok"] is False and [d["status"] for d in doc["devices"]] == ["online", "offline"]
    assert doc["devices"][0]["answer_age_s"] == 150.0 and doc["devices"][0]["ok"] is True


@pytest.mark.parametrize(
    ("text", "expected"),
    [("broker", ("broker", 1883)), ("broker:1884", ("broker", 1884)), ("[::1]:8883", ("::1", 8883)), ("::1", ("::1", 1883))],
)
def test_broker_argument(text: str, expected: tuple[str, int]) -> None:
    assert parse_broker(text, 1883) == expected


def test_broker_and_credentials_from_a_daemon_config_with_options_over_it(tmp_path: Path) -> None:
    from edge.cli import build_parser
    from edge.commands.fleet import broker_config

    mqtt = {"enabled": True, "host": "mqtt.lan", "port": 8883, "username": "cam", "tls": {"enabled": True, "ca_file": "/etc/ca.pem"}}
    config = write_config(tmp_path / "c.toml", {"sinks": {"mqtt": mqtt}})
    got = broker_config(build_parser().parse_args(["fleet", "--config", str(config)]))
    assert (got.host, got.port, got.username, got.tls.enabled, got.tls.ca_file) == ("mqtt.lan", 8883, "cam", True, "/etc/ca.pem")
    args = ["fleet", "--config", str(config), "--broker", "other", "--username-file", "/run/u", "--insecure"]
    got = broker_config(build_parser().parse_args(args))
    assert (got.host, got.port, got.username, got.username_file, got.tls.insecure) == ("other", 8883, "", "/run/u", True)
    got = broker_config(build_parser().parse_args(["fleet", "--broker", "b", "--cert-file", "c.pem", "--key-file", "k.pem"]))
    assert (got.port, got.tls.enabled, got.tls.cert_file, got.tls.key_file) == (8883, True, "c.pem", "k.pem")
    with pytest.raises(ConfigError, match="give --broker"):
        broker_config(build_parser().parse_args(["fleet"]))


@pytest.mark.parametrize("text", ["broker:x", "broker:0", ":1883"])
def test_bad_broker_argument(text: str) -> None:
    with pytest.raises(ConfigError, match="--broker: expected HOST or HOST:PORT"):
        parse_broker(text, 1883)


# --- against a real broker -----------------------------------------------------------------


def publish_retained(port: int, messages: dict[str, Any], auth: tuple[str, str] | None = None) -> None:
    """What daemons leave on the broker: retained availability, stats (once retained) and results."""
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="fleet-test-publisher")
    if auth:
        client.username_pw_set(*auth)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        for topic, payload in messages.items():
            data = payload if isinstance(payload, str) else json.dumps(payload)
            client.publish(topic, data, qos=1, retain=True).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def fleet(port: int, *args: str, env: dict[str, str] | None = None) -> tuple[int, Any, str]:
    """Runs the command; (exit status, parsed JSON when --json, stderr)."""
    cmd = [EXE, "fleet", "--broker", f"127.0.0.1:{port}", "--wait", "1", *args]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})})
    return run.returncode, json.loads(run.stdout) if "--json" in args and run.stdout else run.stdout, run.stderr


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    with Mosquitto(tmp_path / "broker") as b:
        yield b


@pytest.mark.slow
def test_retained_state_is_read_at_once_and_the_exit_status_says_if_all_are_ok(broker: Mosquitto) -> None:
    now = time.time()
    publish_retained(
        broker.port,
        {
            "mnv1-edge/cam-1/availability": "online",
            "mnv1-edge/cam-1/stats": stats(now, stats_interval_s=60),
            "mnv1-edge/cam-1/classification": result(now, answer="bird"),
            "mnv1-edge/cam-2/availability": "offline",
        },
    )
    status, doc, _ = fleet(broker.port, "--json")
    assert status == 69 and {d["device_id"]: d["status"] for d in doc["devices"]} == {"cam-1": "online", "cam-2": "offline"}
    cam1 = doc["devices"][0]
    assert (cam1["answer"], cam1["fps"], cam1["model_sha"], cam1["stale_after_s"]) == ("bird", 9.5, SHA, 180.0)

    publish_retained(broker.port, {"mnv1-edge/cam-2/availability": "online"})
    status, table, _ = fleet(broker.port)
    assert status == 0, table
    assert table.splitlines()[-1] == "2 devices, 2 ok"

    status, table, _ = fleet(broker.port, "--prefix", "elsewhere")
    assert status == 69 and table.strip() == f"no devices under elsewhere/ on 127.0.0.1:{broker.port}"


def test_watch_refreshes_until_interrupted(broker: Mosquitto) -> None:
    now = time.time()
    publish_retained(broker.port, {"mnv1-edge/cam/availability": "online", "mnv1-edge/cam/stats": stats(now)})
    cmd = [EXE, "fleet", "--broker", f"127.0.0.1:{broker.port}", "--wait", "0.5", "--watch", "--interval", "0.2", "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        publish_retained(broker.port, {"mnv1-edge/cam/availability": "offline"})
        while (doc := json.loads(proc.stdout.readline()))["ok"]:
            pass  # refreshes until the change shows
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=10)  # read on: a full pipe would hold its last write (and the exit) forever
        assert proc.returncode == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert first["ok"] is True and doc["devices"][0]["status"] == "offline"


@pytest.mark.slow
def test_credentials_as_the_sink_takes_them(tmp_path: Path) -> None:
    with Mosquitto(tmp_path / "broker", password=("ops", "s3cret")) as b:
        publish_retained(b.port, {"mnv1-edge/cam/availability": "online"}, auth=("ops", "s3cret"))
        secret = tmp_path / "password"
        secret.write_text("s3cret\n")
        secret.chmod(0o600)
        status, doc, err = fleet(b.port, "--json", "--username", "ops", "--password-file", str(secret))
        assert status == 0 and doc["devices"][0]["device_id"] == "cam", err
        status, doc, err = fleet(b.port, "--json", "--username", "ops", env={"MNV1_EDGE_MQTT_PASSWORD": "s3cret"})
        assert status == 0, err
        status, _, err = fleet(b.port, "--username", "ops", env={"MNV1_EDGE_MQTT_PASSWORD": "wrong"})
        assert status == 69 and err.count("\n") == 1 and "refused" in err and "check --username" in err
        status, _, err = fleet(b.port, "--username", "ops", "--password-file", str(tmp_path / "nope"))
        assert status == 73 and "check --password-file" in err


@pytest.mark.slow
def test_tls_as_the_sink_checks_it(tmp_path: Path) -> None:
    from tests.support.broker import make_certs

    ca, cert, key = make_certs(tmp_path)
    with Mosquitto(tmp_path / "broker", tls=(ca, cert, key)) as b:
        argv = [EXE, "fleet", "--wait", "0.5", "--json", "--ca-file", str(ca)]

        def run(host: str, *extra: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([*argv, "--broker", f"{host}:{b.port}", *extra], capture_output=True, text=True, timeout=60)

        ok = run("localhost")
        assert ok.returncode == 69 and json.loads(ok.stdout)["devices"] == [], ok.stderr  # connected; nobody there
        wrong_name = run("127.0.0.1")  # the certificate names localhost only
        assert wrong_name.returncode == 69 and wrong_name.stdout == ""
        assert "TLS handshake failed" in wrong_name.stderr and wrong_name.stderr.count("\n") == 1
        assert run("127.0.0.1", "--insecure").stdout.startswith("{")
        # Plain MQTT to the TLS port: mosquitto closes the connection at once; say why, in this command's options.
        start = time.monotonic()
        status, _, err = fleet(b.port)
        assert status == 69 and err.count("\n") == 1 and "the port speaks TLS; add --tls" in err, err
        assert time.monotonic() - start < 8.0  # not the 10 s CONNACK timeout
    with Mosquitto(tmp_path / "plain") as plain:
        status, _, err = fleet(plain.port, "--tls", "--insecure")
        assert status == 69 and err.count("\n") == 1 and "the port does not seem to speak TLS" in err, err


def test_no_broker_is_one_line_and_exit_69() -> None:
    status, _, err = fleet(free_port())
    assert status == 69 and err.count("\n") == 1 and "cannot connect to the broker" in err


# --- three real daemons: one killed, one stalled, one healthy ------------------------------


def daemon_config(tmp_path: Path, name: str, port: int, source: dict[str, Any]) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    data = {
        "device_id": name,
        "state_dir": str(folder / "state"),
        "stats_interval_s": 1.0,
        "model": {"path": str(paths.default_model())},
        "source": {"max_fps": 4.0, **source},
        "sinks": {
            "file": {"enabled": False},
            "mqtt": {"enabled": True, "port": port, "stats_interval_s": 1.0, "retain": True, "spool": {"path": str(folder / "spool")}},
        },
    }
    return write_config(folder / "config.toml", data)


def wait_for_fleet(port: int, want: dict[str, str], timeout: float, complete: bool = False) -> tuple[int, dict[str, Any], float]:
    """Runs `fleet --json` until the statuses are `want` (and with `complete`, every device has shown
    stats and a result); (exit status, document, seconds it took)."""
    start = time.monotonic()
    doc: dict[str, Any] = {}
    while time.monotonic() - start < timeout:
        status, doc, _ = fleet(port, "--json", "--stale-after", "3")
        got = {d["device_id"]: d["status"] for d in doc.get("devices", [])}
        assert got.get("healthy", "online") == "online", doc  # the healthy one never looks otherwise
        if got == want and (not complete or all(d["answer"] and d["fps"] is not None for d in doc["devices"])):
            return status, doc, time.monotonic() - start
    raise AssertionError(f"fleet never showed {want} within {timeout} s; last: {json.dumps(doc)}")


@pytest.mark.slow
def test_three_daemons_killed_stalled_and_healthy(broker: Mosquitto, tmp_path: Path) -> None:
    stall = tmp_path / "stall"
    camera_port = free_port()
    jpegs = sorted(str(p) for p in paths.sample_images().glob("*.jpg"))
    camera = subprocess.Popen([sys.executable, str(MJPEG_SERVER), "--port", str(camera_port), "--stall", str(stall), "--fps", "4", *jpegs])
    sources = {
        "healthy": {"kind": "images", "images": {"path": str(paths.sample_images()), "loop": True}},
        "killed": {"kind": "synthetic", "synthetic": {"fps": 4.0}},
        "stalled": {"kind": "video", "video": {"url": f"http://127.0.0.1:{camera_port}/cam.mjpg"}},
    }
    daemons: dict[str, subprocess.Popen[str]] = {}
    try:
        for name, source in sources.items():
            config = daemon_config(tmp_path, name, broker.port, source)
            with open(tmp_path / name / "daemon.log", "w") as log:
                daemons[name] = subprocess.Popen([EXE, "run", "--config", str(config)], stdout=subprocess.DEVNULL, stderr=log, text=True)
        status, doc, _ = wait_for_fleet(broker.port, dict.fromkeys(sources, "online"), 90, complete=True)
        assert status == 0, doc

        daemons["killed"].send_signal(signal.SIGKILL)
        stall.touch()  # the camera keeps its connection open and sends nothing
        status, doc, took = wait_for_fleet(broker.port, {"healthy": "online", "killed": "offline", "stalled": "stalled"}, 60)
        assert status == 69
        rows = {d["device_id"]: d for d in doc["devices"]}
        assert rows["killed"]["availability"] == "offline"  # the broker's last will
        assert rows["stalled"]["availability"] == "online" and rows["stalled"]["last_frame_age_s"] > 3
        assert rows["stalled"]["answer"] is not None  # its last (retained) record is still shown, with its age
        print(f"fleet showed killed/stalled/healthy {took:.1f} s after kill -9 and the stall (stale-after 3 s, stats every 1 s)")
        status, table, _ = fleet(broker.port, "--stale-after", "3")
        assert status == 69 and table.splitlines()[-1] == "3 devices, 1 ok, 2 not: killed, stalled"
    finally:
        for proc in daemons.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        camera.kill()
        camera.wait()
