"""Two daemons with one device_id (a cloned SD card): found, named, and never one `seq` for two records.
Against a real mosquitto with real daemon subprocesses; a restart after a power cut is no clash."""

from __future__ import annotations

import json
import re
import select
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.fleet.state import Fleet
from tests.support.broker import Mosquitto
from tests.support.daemon import EXE, base_config, write_config
from tests.support.faults import model
from tests.support.mqtt_clients import wait_until

__all__ = ["model"]  # a fixture


# --- the rules, without a broker ---------------------------------------------------------------


def claim(instance: str, seq: int | None = None) -> Any:
    from edge.sinks.mqtt.clash import Claim

    return Claim(instance, "host", 1, "2026-01-01T00:00:00.000Z", seq)


def test_only_a_live_claim_of_another_instance_is_a_clash() -> None:
    from edge.sinks.mqtt.clash import HOLD_S, ClashWatch

    watch = ClashWatch("aaaaaaaaaaaa")
    watch.sent(100.0, connect=True)
    assert not watch.settled(100.0)
    # The retained claim of the previous run (a reboot): remembered, not a clash.
    assert not watch.received(claim("bbbbbbbbbbbb"), retained=True, now=100.01) and watch.previous is not None
    assert not watch.received(claim("aaaaaaaaaaaa"), retained=False, now=100.02)  # our own, back: settles soon
    assert not watch.settled(100.1) and watch.settled(100.3)
    # Another instance publishing its claim now: a clash, answered at most once a second, over after HOLD_S.
    assert watch.received(claim("cccccccccccc"), retained=False, now=101.0) and watch.clash(101.0)
    assert watch.reply_due(101.0)
    watch.sent(101.0)
    assert not watch.reply_due(101.5) and watch.episodes == 1
    assert watch.received(claim("cccccccccccc"), retained=False, now=103.0) and watch.episodes == 1
    assert watch.clash(103.0 + HOLD_S - 0.1) and not watch.clash(103.0 + HOLD_S)


def test_no_echo_of_the_claim_does_not_hold_records_for_ever() -> None:
    """A broker whose ACL hides <prefix>instance: the check cannot work; records flow after ECHO_TIMEOUT_S."""
    from edge.sinks.mqtt.clash import ClashWatch

    watch = ClashWatch()
    watch.sent(0.0, connect=True)
    assert not watch.settled(4.9) and watch.settled(5.0) and watch.echo_missing(5.0)


def test_fleet_tells_a_restart_from_two_daemons() -> None:
    def stats(instance: str) -> bytes:
        return json.dumps({"instance": instance, "ts": "2026-01-01T00:00:00.000Z"}).encode()

    restarted, clashing = Fleet("p"), Fleet("p")
    for fleet, sequence in ((restarted, ["a", "a", "b", "b", "c"]), (clashing, ["a", "b", "a"])):
        fleet.handle("p/cam/availability", b"online", True, 0.0)
        for instance in sequence:
            fleet.handle("p/cam/stats", stats(instance), False, 1.0)
    assert restarted.rows(1.0, 60)[0].status != "clash" and restarted.rows(1.0, 60)[0].instance == "c"
    row = clashing.rows(1.0, 60)[0]
    assert row.status == "clash" and "two daemons publish as this device_id (instances b, a)" in row.reason


def test_the_record_numbers_continue_above_those_another_run_published(tmp_path: Path) -> None:
    from edge.daemon.sequence import RecordSequence

    seq = RecordSequence(tmp_path)
    assert seq.next() == 0
    seq.advance_past(5000)  # a replaced device's retained claim, or a clone's
    assert seq.next() == 5001
    seq.advance_past(10)  # numbers below ours: nothing changes
    assert seq.next() == 5002
    seq.close()
    assert RecordSequence(tmp_path).next() == 5003


# --- real daemons ------------------------------------------------------------------------------


class Listener:
    """Every message under mnv1-edge/cam/# (QoS 1), with its retain flag and arrival time."""

    def __init__(self, port: int) -> None:
        self.messages: list[tuple[float, str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="clash-listener")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("mnv1-edge/cam/#", qos=1)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((time.monotonic(), message.topic, bytes(message.payload), bool(message.retain)))

    def payloads(self, kind: str, since: float = 0.0) -> list[bytes]:
        with self.lock:
            return [p for t, topic, p, _ in self.messages if topic == f"mnv1-edge/cam/{kind}" and t >= since]

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(p) for p in self.payloads("classification")]

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def daemon_config(tmp_path: Path, model: Path, name: str, port: int, first_seq: int = 100) -> Path:
    """One daemon of device `cam` with a state_dir of its own, its counter at `first_seq` (a cloned card's)."""
    folder = tmp_path / name
    (folder / "state").mkdir(parents=True)
    (folder / "state" / "seq").write_text(f"{first_seq}\n")
    data = base_config(folder, model, fps=20.0)
    data["device_id"] = "cam"
    data["sinks"]["mqtt"] = {"enabled": True, "port": port, "stats_interval_s": 1.0, "keepalive_s": 2, "spool": {"path": str(folder / "spool")}}
    return write_config(folder / "c.toml", data)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    with Mosquitto(tmp_path / "broker") as b:
        yield b


def run(config: Path, log: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([EXE, "run", "--config", str(config)], stdout=subprocess.DEVNULL, stderr=log.open("w"), text=True)


def one_seq_one_record(records: list[dict[str, Any]]) -> dict[int, set[str]]:
    """seq -> the distinct records published with it (a replay after a reconnect repeats one exactly)."""
    by_seq: dict[int, set[str]] = {}
    for r in records:
        by_seq.setdefault(r["seq"], set()).add(json.dumps(r, sort_keys=True))
    return {seq: records for seq, records in by_seq.items() if len(records) > 1}


@pytest.mark.slow
def test_two_daemons_with_one_device_id_are_named_and_never_share_a_seq(broker: Mosquitto, model: Path, tmp_path: Path) -> None:
    """Each took the client id from the other (10 reconnects in 9 s) and 41 of 46 seq values carried two
    different records; the only log line was "lost the connection (Unspecified error)"."""
    listener = Listener(broker.port)
    first = run(daemon_config(tmp_path, model, "first", broker.port), tmp_path / "first.log")
    second: subprocess.Popen[str] | None = None
    try:
        wait_until(lambda: len(listener.records()) >= 20, 30, "the first daemon's records")
        second = run(daemon_config(tmp_path, model, "second", broker.port), tmp_path / "second.log")
        wait_until(lambda: "another mnv1-edge publishes as device_id cam" in (tmp_path / "second.log").read_text(), 30, "the clash warning")
        time.sleep(4)  # both run on
        status = subprocess.run(
            [EXE, "fleet", "--broker", f"127.0.0.1:{broker.port}", "--wait", "1.5", "--json"], capture_output=True, text=True, timeout=60
        )
        assert status.returncode == 69, status.stderr
        row = json.loads(status.stdout)["devices"][0]
        assert row["status"] == "clash" and "two daemons publish as this device_id" in row["reason"], row
        held = len(listener.records())
        time.sleep(2)
        assert len(listener.records()) == held  # neither publishes while the other is seen
        stopped = time.monotonic()
        second.send_signal(signal.SIGTERM)
        assert second.wait(15) == 0
        # The first sees no claim for HOLD_S, then publishes what it held: every record of its file sink arrives.
        mine = [json.loads(line) for line in (tmp_path / "first" / "results.jsonl").read_text().splitlines()]
        wait_until(lambda: {r["seq"] for r in mine} <= {r["seq"] for r in listener.records()}, 40, "the first daemon's held records")
        availability = listener.payloads("availability", since=stopped)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(15)
        listener.stop()
    assert one_seq_one_record(listener.records()) == {}
    logs = {name: (tmp_path / f"{name}.log").read_text() for name in ("first", "second")}
    for name, other in (("first", "second"), ("second", "first")):
        warning = re.search(r"another mnv1-edge publishes as device_id cam on .*: instance ([0-9a-f]{12}) on host (\S+) \(pid (\d+)", logs[name])
        assert warning is not None, logs[name]
        assert f"pid {(first if other == 'first' else second).pid}" in warning.group(0)  # type: ignore[union-attr]
        assert len(re.findall("another mnv1-edge publishes as device_id cam", logs[name])) <= 6  # once per back-off step
    assert "it stopped; publishing the" in logs["first"]
    assert "records spooled; they are sent after the next start" in logs["second"] or "wait in the spool" in logs["second"]
    # One client id per run: neither took the connection from the other.
    assert "already connected" not in broker.log_text() and "lost the connection" not in logs["first"] + logs["second"]
    # Home Assistant's availability stays online/offline; the second's clean stop left "offline", the first put "online" back.
    assert set(availability) <= {b"online", b"offline"} and availability[-1:] == [b"online"], availability


class FreezingProxy:
    """A TCP relay to the broker that, once `freeze()`d, keeps the broker's side of every connection
    open and silent after the client goes: what the broker sees of a device that lost power."""

    def __init__(self, port: int) -> None:
        self.upstream = port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.frozen = threading.Event()
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            broker = socket.create_connection(("127.0.0.1", self.upstream))
            threading.Thread(target=self._relay, args=(client, broker), daemon=True).start()

    def _relay(self, client: socket.socket, broker: socket.socket) -> None:
        pair = {client: broker, broker: client}
        while not self.frozen.is_set():
            ready, _, _ = select.select(list(pair), [], [], 0.1)
            for sock in ready:
                data = sock.recv(65536)
                if not data or self.frozen.is_set():
                    self.frozen.wait()
                    break
                pair[sock].sendall(data)
        self.held.append(broker)  # never closed: the broker waits for 1.5 keepalives, then fires the will

    def freeze(self) -> None:
        self.frozen.set()

    def close(self) -> None:
        self.server.close()
        for sock in self.held:
            sock.close()


@pytest.mark.slow
def test_a_restart_after_a_power_cut_is_no_clash_and_stays_online(broker: Mosquitto, model: Path, tmp_path: Path) -> None:
    """The new run sees its previous run's retained claim and, once the broker notices the dead
    connection, its last will "offline": neither is a clash, and availability ends "online"."""
    proxy = FreezingProxy(broker.port)
    listener = Listener(broker.port)
    config = daemon_config(tmp_path, model, "cam", proxy.port)
    before = run(config, tmp_path / "before.log")
    try:
        wait_until(lambda: len(listener.records()) >= 10, 30, "records before the power cut")
        proxy.freeze()
        before.kill()  # the power goes: no DISCONNECT, and the broker's side of the connection stays open
        before.wait()
        data = config.read_text().replace(f"port = {proxy.port}", f"port = {broker.port}")
        config.write_text(data)
        cut = time.monotonic()
        after = run(config, tmp_path / "after.log")
        wait_until(lambda: b"offline" in listener.payloads("availability", since=cut), 20, "the dead session's last will")
        wait_until(lambda: listener.payloads("availability", since=cut)[-1] == b"online", 10, "online again")
        count = len(listener.records())
        wait_until(lambda: len(listener.records()) > count + 10, 20, "records after the restart")
        after.send_signal(signal.SIGTERM)
        assert after.wait(15) == 0
    finally:
        for proc in (before,):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        listener.stop()
        proxy.close()
    log = (tmp_path / "after.log").read_text()
    assert "another mnv1-edge" not in log and "already published" not in log, log
    assert one_seq_one_record(listener.records()) == {}
