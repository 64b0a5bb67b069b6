"""Pytest fixtures for MQTT tests: brokers, subscribers and sink subprocesses, each cleaned up after the test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.broker import Mosquitto
from tests.support.mqtt_clients import Collector, Driver


@pytest.fixture
def make_broker(tmp_path: Path) -> Iterator[Callable[..., Mosquitto]]:
    """Start a private mosquitto: `make_broker(password=(user, pw), tls=(ca, cert, key))`."""
    started: list[Mosquitto] = []

    def make(name: str = "broker", **options: Any) -> Mosquitto:
        broker = Mosquitto(tmp_path / name, **options)
        broker.start()
        started.append(broker)
        return broker

    yield make
    for broker in started:
        broker.stop()


@pytest.fixture
def broker(make_broker: Callable[..., Mosquitto]) -> Mosquitto:
    """A running anonymous mosquitto on a free loopback port (stop/start it to simulate an outage)."""
    return make_broker()


@pytest.fixture
def collector() -> Iterator[Callable[[int, str, str], Collector]]:
    """Subscribe with `collector(port, topic, client_id)`; disconnected after the test."""
    started: list[Collector] = []

    def make(port: int, topic: str, client_id: str) -> Collector:
        started.append(Collector(port, topic, client_id))
        return started[-1]

    yield make
    for c in started:
        c.stop()


@pytest.fixture
def driver() -> Iterator[Callable[..., Driver]]:
    """Start an MqttSink subprocess with `driver(port, spool, log, first=1, keepalive=5)`; killed after the test."""
    started: list[Driver] = []

    def make(port: int, spool: Path, log: Path, **options: Any) -> Driver:
        started.append(Driver(port, spool, log, **options))
        return started[-1]

    yield make
    for d in started:
        d.stop()
