"""MQTT connections that reach a port but never get a session: each back-off step says why, at warning,
and the records wait in the spool (issue #14 items 1 and 15). Real mosquitto, real loopback listeners."""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from edge import paths
from edge.config import MqttSinkConfig, parse
from edge.model.contract import Prediction
from edge.record import Record
from edge.sinks.mqtt.diagnose import speaks_tls
from edge.sinks.mqtt.sink import MqttSink
from tests.support.broker import Mosquitto, make_certs
from tests.support.daemon import EXE, base_config, write_config
from tests.support.listeners import HTTP_400, black_hole, listener
from tests.support.mqtt_clients import wait_until


def record(seq: int) -> Record:
    now = time.time()
    return Record(seq, now, now, "cam", "synthetic", (Prediction(281, "tabby", 0.75),), 2.5, "0" * 64)


def sink_config(port: int, spool: Path, **mqtt_keys: Any) -> MqttSinkConfig:
    data = {"enabled": True, "port": port, "reconnect_max_s": 1.0, "close_timeout_s": 1.0, "spool": {"path": str(spool)}, **mqtt_keys}
    config: MqttSinkConfig = parse({"device_id": "cam", "sinks": {"mqtt": data}}).sinks.mqtt
    return config


@pytest.mark.slow
def test_the_tls_probe_tells_a_tls_port_from_the_others(tmp_path: Path) -> None:
    ca, cert, key = make_certs(tmp_path)
    with Mosquitto(tmp_path / "tls", tls=(ca, cert, key)) as tls_broker:
        assert speaks_tls("127.0.0.1", tls_broker.port)
    with Mosquitto(tmp_path / "plain") as plain_broker:
        assert not speaks_tls("127.0.0.1", plain_broker.port)
    with listener(HTTP_400) as http_port:
        assert not speaks_tls("127.0.0.1", http_port)
    with listener(None) as silent_port:
        assert not speaks_tls("127.0.0.1", silent_port, timeout=1.0)


@contextmanager
def server(kind: str, tmp_path: Path) -> Iterator[int]:
    """A port where TCP connects but MQTT does not: the port number."""
    if kind in ("tls-port", "rejected-id", "tls-to-plain"):
        tls = make_certs(tmp_path) if kind == "tls-port" else None
        with Mosquitto(tmp_path / "broker", tls=tls) as broker:
            yield broker.port
    elif kind == "black-hole":
        with black_hole() as port:
            yield port
    else:
        with listener(HTTP_400 if kind == "http" else None) as port:
            yield port


CASES = {
    "tls-port": ({}, "no MQTT session: the port speaks TLS and this client spoke plain MQTT: set sinks.mqtt.tls.enabled = true"),
    "silent": ({"keepalive_s": 1}, "it accepted the connection but did not answer the MQTT CONNECT within sinks.mqtt.keepalive_s (1 s)"),
    "http": ({}, "no MQTT session: it answered in HTTP, not MQTT: check sinks.mqtt.host and sinks.mqtt.port"),
    # The config refuses such ids now; the broker may reject others (its own rules), which looks the same.
    "rejected-id": ({}, "no MQTT session: it closed the connection without answering the MQTT CONNECT: the broker rejected client id 'cam\\x85'"),
    "black-hole": ({}, "unreachable (no answer to the TCP connect: a host that is down, a wrong address, or a firewall dropping packets)"),
    "tls-to-plain": ({"tls": {"enabled": True}}, "the port does not seem to speak TLS: check sinks.mqtt.port (8883 is usual for TLS)"),
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(CASES))
def test_each_failed_handshake_warns_with_its_likely_cause(kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="edge")
    keys, cause = CASES[kind]
    with server(kind, tmp_path) as port:
        config = sink_config(port, tmp_path / "spool", **keys)
        if kind == "rejected-id":
            config = dataclasses.replace(config, client_id="cam\x85")  # past the config check, as a broker rule would be
        sink = MqttSink(config, "cam")
        sink.open()
        try:
            sink.write(record(1))

            def warnings() -> list[logging.LogRecord]:
                return [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("edge.sinks.mqtt")]

            wait_until(lambda: sum(cause in r.getMessage() for r in warnings()) >= 2, 30, f"two warnings naming the cause ({kind})")
            assert sink.spool.depth() == 1 and not sink.stats().counters["mqtt_connected"]
            steps = [r for r in warnings() if cause in r.getMessage()]
            assert all(r.levelno == logging.WARNING and "records are spooled; retrying in 1 s" in r.getMessage() for r in steps)
        finally:
            sink.close()
    assert any("MQTT sink closed without ever reaching" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


@pytest.mark.slow
def test_the_daemon_warns_in_the_journal_when_the_broker_port_speaks_tls(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    model = Path(request.getfixturevalue("converted_model" if paths.default_model().is_file() else "reference_model"))
    data = base_config(tmp_path, model, frames=10, fps=5.0)
    with server("tls-port", tmp_path) as port:
        mqtt = {"enabled": True, "port": port, "reconnect_max_s": 1.0, "close_timeout_s": 1.0}
        data["sinks"]["mqtt"] = {**mqtt, "spool": {"path": str(tmp_path / "spool")}}
        config = write_config(tmp_path / "c.toml", data)
        env = {**os.environ, "MNV1_EDGE_LOG_FORMAT": "journal"}
        run = subprocess.run([EXE, "run", "--config", str(config)], capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr
    # <4> = warning: what `journalctl -p warning` shows.
    assert "<4>edge.sinks.mqtt.connection: MQTT broker 127.0.0.1:" in run.stderr and "no MQTT session: the port speaks TLS" in run.stderr, run.stderr
    assert "<4>edge.sinks.mqtt.sink: MQTT sink closed without ever reaching 127.0.0.1:" in run.stderr and "10 records wait in the spool" in run.stderr
