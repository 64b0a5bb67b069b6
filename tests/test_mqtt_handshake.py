"""MQTT connections that reach a port but never get a session: each says why (issue #14 items 1, 15)."""

from __future__ import annotations

from pathlib import Path

from edge.sinks.mqtt.diagnose import speaks_tls
from tests.support.broker import Mosquitto
from tests.support.listeners import HTTP_400, listener, make_certs


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
