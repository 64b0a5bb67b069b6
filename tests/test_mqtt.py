"""The MQTT sink against a real mosquitto on a free loopback port: delivery through outages and kill -9."""

from __future__ import annotations

import gc
import logging
import os
import re
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edge.config import MqttSinkConfig, parse
from edge.errors import ConfigError, SinkError
from edge.log import RepeatFilter
from edge.model.contract import Prediction
from edge.record import Record
from edge.sinks.mqtt.credentials import mqtt_credentials
from edge.sinks.mqtt.sink import MqttSink
from tests.support.broker import Mosquitto, free_port, make_certs
from tests.support.mqtt_clients import Collector, Driver, mosquitto_sub, wait_until

MakeBroker = Callable[..., Mosquitto]
MakeCollector = Callable[[int, str, str], Collector]
MakeDriver = Callable[..., Driver]
PREFIX = "mnv1-edge/cam/"


def record(seq: int) -> Record:
    now = time.time()
    return Record(seq, now, now, "cam", "synthetic", (Prediction(281, "tabby", 0.75),), 2.5, "0" * 64)


def sink_config(port: int, spool: Path, **mqtt_keys: Any) -> MqttSinkConfig:
    data = {"enabled": True, "port": port, "reconnect_max_s": 2.0, "spool": {"path": str(spool)}, **mqtt_keys}
    config: MqttSinkConfig = parse({"device_id": "cam", "sinks": {"mqtt": data}}).sinks.mqtt
    return config


@pytest.mark.slow
def test_broker_down_30s_mid_run_loses_nothing(broker: Mosquitto, collector: MakeCollector, tmp_path: Path) -> None:
    subscriber = collector(broker.port, PREFIX + "classification", "outage-subscriber")
    sink = MqttSink(sink_config(broker.port, tmp_path / "spool"), "cam")
    sink.open()
    try:
        start = time.monotonic()
        outage = (5.0, 35.0)  # seconds into the 40 s run of 1,000 records at 25/s
        stopped = restarted = False
        for seq in range(1, 1001):
            time.sleep(max(0.0, start + seq / 25 - time.monotonic()))
            sink.write(record(seq))
            elapsed = time.monotonic() - start
            if not stopped and elapsed >= outage[0]:
                broker.stop()
                stopped = True
            if stopped and not restarted and elapsed >= outage[1]:
                broker.start()
                restarted = True
        assert stopped and restarted
        mid_outage = sink.stats()
        wait_until(lambda: len(set(subscriber.seqs())) == 1000, 30, "all 1,000 records at the subscriber")
        assert subscriber.unique_in_order() == list(range(1, 1001))
        wait_until(lambda: sink.spool.depth() == 0, 10, "the spool to drain")
        assert sink.stats().counters["mqtt_connects"] == 2
        assert mid_outage.spool is not None and mid_outage.spool.dropped == 0
    finally:
        sink.close()


@pytest.mark.slow
def test_kill9_while_broker_down_then_restart_loses_nothing(broker: Mosquitto, collector: MakeCollector, driver: MakeDriver, tmp_path: Path) -> None:
    subscriber = collector(broker.port, PREFIX + "classification", "kill-subscriber")
    spool = tmp_path / "spool"
    first = driver(broker.port, spool, tmp_path / "driver1.log")
    first.command("write 300", "written 300")
    wait_until(lambda: len(set(subscriber.seqs())) >= 300, 20, "the first 300 records")
    broker.stop()
    first.command("write 300", "written 600")  # these exist only in the spool now
    first.kill9()
    broker.start()
    second = driver(broker.port, spool, tmp_path / "driver2.log", first=601)
    second.command("write 200", "written 800")
    assert second.command("drain 30", "drained") == "drained 0"
    second.command("close", "closed")
    assert second.proc.wait(10) == 0
    wait_until(lambda: len(set(subscriber.seqs())) == 800, 20, "all 800 records at the subscriber")
    assert subscriber.unique_in_order() == list(range(1, 801))


@pytest.mark.slow
def test_availability_last_will_on_kill9_and_offline_on_clean_stop(broker: Mosquitto, driver: MakeDriver, tmp_path: Path) -> None:
    topic = PREFIX + "availability"
    watcher = mosquitto_sub(broker.port, topic, 2)
    first = driver(broker.port, tmp_path / "spool", tmp_path / "driver1.log", keepalive=2)
    first.command("write 5", "written 5")
    assert first.command("drain 10", "drained") == "drained 0"
    time.sleep(0.3)  # let mosquitto_sub see "online" before the kill
    first.kill9()
    out, _ = watcher.communicate(timeout=20)
    assert out.split() == ["online", "offline"], out  # the broker published the last will

    watcher = mosquitto_sub(broker.port, topic, 2)
    time.sleep(0.3)  # it receives the retained "offline" first
    second = driver(broker.port, tmp_path / "spool", tmp_path / "driver2.log", first=6, keepalive=2)
    out, _ = watcher.communicate(timeout=20)
    assert out.split() == ["offline", "online"], out  # online is re-sent on connect, retained

    watcher = mosquitto_sub(broker.port, topic, 2)
    time.sleep(0.3)
    second.command("close", "closed")
    assert second.proc.wait(10) == 0
    out, _ = watcher.communicate(timeout=20)
    assert out.split() == ["online", "offline"], out
    log = broker.log_text()
    assert re.search(r"Client mnv1-edge-cam-[0-9a-f]{12} disconnected\.", log)  # a clean DISCONNECT (the will was not used); one client id per run


@pytest.mark.slow
def test_wrong_password_logs_one_line_per_backoff_step(
    make_broker: MakeBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, logger="edge")
    secret = "s3cret-Pw"
    broker = make_broker(password=("edge", secret))
    password_file = tmp_path / "password"
    password_file.write_text("wrong-Pw\n")
    password_file.chmod(0o644)
    sink = MqttSink(sink_config(broker.port, tmp_path / "spool", username="edge", password_file=str(password_file), reconnect_max_s=30.0), "cam")
    sink.open()
    try:
        for seq in range(1, 201):  # records keep coming: they must not cause log lines
            sink.write(record(seq))
            time.sleep(0.02)
        time.sleep(0.6)  # attempts at ~0, 1 and 3 s
    finally:
        sink.close()
    steps = [r for r in caplog.records if "refused the connection" in r.getMessage()]
    refused = [r.getMessage() for r in steps]
    assert len(refused) == 3, refused
    journal = RepeatFilter()  # what the daemon's handler applies: each back-off step reaches the journal
    assert all(journal.filter(r) for r in steps)
    assert [m.split("retrying in ")[1] for m in refused] == ["1 s", "2 s", "4 s"]
    assert all("check the username and password" in m for m in refused)
    assert any("readable by every user" in r.getMessage() for r in caplog.records)
    assert sink.spool.depth() == 200

    caplog.clear()
    monkeypatch.setenv("MNV1_EDGE_MQTT_PASSWORD", secret)
    sink = MqttSink(sink_config(broker.port, tmp_path / "spool", username="edge", reconnect_max_s=30.0), "cam")
    sink.open()
    try:
        wait_until(lambda: sink.spool.depth() == 0, 10, "the backlog to be delivered with the right password")
    finally:
        sink.close()
    assert all(secret not in r.getMessage() and "wrong-Pw" not in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"qos": 3}, "sinks.mqtt.qos: expected 0, 1 or 2"),
        ({"topic_prefix": "cams/+/"}, "sinks.mqtt.topic_prefix: must not contain MQTT wildcards"),
        ({"topic_prefix": "$SYS/cam/"}, "sinks.mqtt.topic_prefix: must not start with \\$"),
        ({"max_inflight": 0}, "sinks.mqtt.max_inflight: must be between 1 and 65535"),
        ({"homeassistant": {"discovery_prefix": "ha/#"}}, "sinks.mqtt.homeassistant.discovery_prefix: must not contain MQTT wildcards"),
        ({"spool": {"max_bytes": 10}}, "sinks.mqtt.spool.max_bytes: must be at least 65536"),
    ],
)
def test_invalid_topic_or_qos_is_a_config_error_naming_the_key(keys: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse({"sinks": {"mqtt": {"enabled": True, **keys}}})


@pytest.mark.slow
def test_tls_verifies_the_broker_and_its_host_name(make_broker: MakeBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="edge")
    ca, cert, key = make_certs(tmp_path)
    broker = make_broker(tls=(ca, cert, key))
    tls = {"enabled": True, "ca_file": str(ca)}
    cases = [("localhost", tls, True), ("127.0.0.1", tls, False), ("127.0.0.1", {**tls, "insecure": True}, True)]
    for n, (host, tls_keys, delivered) in enumerate(cases):
        caplog.clear()
        sink = MqttSink(sink_config(broker.port, tmp_path / f"spool{n}", host=host, tls=tls_keys), "cam")
        sink.open()
        try:
            sink.write(record(1))
            if delivered:
                wait_until(lambda: sink.spool.depth() == 0, 10, f"delivery over TLS to {host}")  # noqa: B023
            else:
                wait_until(lambda: sum("TLS handshake failed" in r.getMessage() for r in caplog.records) >= 2, 10, "two attempts")
                assert sink.spool.depth() == 1
        finally:
            sink.close()
        failures = [r.getMessage() for r in caplog.records if "TLS handshake failed" in r.getMessage()]
        if delivered:
            assert not failures
        else:
            assert len(failures) == 2, failures
            assert "IP address mismatch" in failures[0] or "hostname" in failures[0], failures[0]


def test_publish_benchmark_reports_rate_and_write_amplification(broker: Mosquitto, tmp_path: Path) -> None:
    from edge.bench.mqtt import run_publish_benchmark

    result = run_publish_benchmark(300, "127.0.0.1", broker.port, tmp_path / "spool")
    assert result["records"] == 300 and result["dropped"] == 0 and result["reconnects"] == 0
    assert result["rate_per_s"] > 0
    # each record is stored once, plus a 16-byte frame header and the occasional cursor write
    assert result["payload_bytes_per_record"] < result["spool_bytes_per_record"] < result["payload_bytes_per_record"] + 40


def fds_under(directory: Path) -> list[str]:
    targets = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            targets.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            pass  # the listing's own descriptor, closed meanwhile
    return [t for t in targets if t.startswith(f"{directory}/")]


def test_a_bad_tls_file_fails_open_before_the_spool_is_touched(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("not a certificate\n")
    spool = tmp_path / "spool"
    sink = MqttSink(sink_config(free_port(), spool, tls={"enabled": True, "ca_file": str(ca)}), "cam")
    with pytest.raises(SinkError, match=r"sinks\.mqtt\.tls: cannot load the CA"):
        sink.open()
    assert fds_under(spool) == []  # no leaked descriptors, and so no lock held on the spool
    sink = MqttSink(sink_config(free_port(), spool), "cam")
    sink.open()  # a corrected config (a reload) gets the spool
    sink.close()


def test_a_secret_file_that_is_not_utf8_is_a_clear_error(tmp_path: Path) -> None:
    password_file = tmp_path / "password"
    password_file.write_bytes(b"\xff\xfepass\n")  # UTF-16 from a Windows editor, say
    config = sink_config(1883, tmp_path / "spool", username="edge", password_file=str(password_file))
    with pytest.raises(SinkError, match=re.escape(f"{password_file}: the password is not UTF-8 text; check sinks.mqtt.password_file")):
        mqtt_credentials(config)


def test_mosquitto_exiting_at_start_leaves_no_pipe_open(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker")
    broker.conf.write_text("no_such_option true\n")
    gc.collect()  # earlier tests' garbage (paho's sockets) must not count here
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        with pytest.raises(RuntimeError, match="mosquitto exited at start"):
            broker.start()
        gc.collect()
    assert broker.proc is None
    unclosed = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning) and "unclosed file" in str(w.message)]
    assert unclosed == []  # the stderr pipe was closed, not left to the garbage collector
