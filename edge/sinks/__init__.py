"""Result sinks: the protocol, and a factory that imports each kind's dependency lazily."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from edge.config import Config
    from edge.record import Record
    from edge.stats import SinkCounters, StatsReport


class Sink(Protocol):
    """Receives result records. `write` must not block the pipeline for long and must not raise
    for transient faults (a broker away, a full disk): the sink counts and reports them in
    `stats`. `SinkError` is for faults it cannot survive (e.g. cannot open at start)."""

    name: str

    def open(self) -> None: ...

    def write(self, record: Record) -> None: ...

    def report(self, stats: StatsReport) -> None: ...  # the daemon's periodic stats

    def stats(self) -> SinkCounters: ...  # this sink's own counters, and what it lost

    def flush(self) -> None: ...

    def close(self) -> None: ...


def make_sinks(
    config: Config,
    config_path: Path | None = None,
    answers: tuple[str, ...] = (),
    view_check: bool = False,
    seq_floor: Callable[[int], None] | None = None,
) -> list[Sink]:
    """The enabled sinks, not yet opened; the MQTT one (and paho) is imported only when enabled.

    `config_path` lets the MQTT sink warn when the file holding its secrets is world-readable.
    `answers` are the names a record's `answer` can take besides "none" (the configured groups, or
    a custom model's labels; empty for ImageNet's 1001): Home Assistant discovery announces one
    binary_sensor per answer; `view_check` (a fixed-camera model's view is watched) one more for a moved camera.
    `seq_floor(n)`: the MQTT sink learnt that record numbers up to n were used as this device (edge/sinks/mqtt/clash.py)."""
    sinks: list[Sink] = []
    if config.sinks.stdout.enabled:
        from edge.sinks.stdout import StdoutSink

        sinks.append(StdoutSink())
    if config.sinks.file.enabled:
        from edge.sinks.file import FileSink

        sinks.append(FileSink(config.sinks.file))
    if config.sinks.mqtt.enabled:
        from edge.sinks.mqtt.sink import MqttSink

        snapshots = config.snapshots.published  # the newest snapshot JPEG, retained on <prefix>snapshot
        mqtt = config.sinks.mqtt
        sinks.append(
            MqttSink(
                mqtt,
                device_id=config.device,
                config_path=config_path,
                answers=answers,
                snapshots=snapshots,
                view_check=view_check,
                seq_floor=seq_floor,
            )
        )
    if config.sinks.prometheus.enabled:
        from edge.sinks.prometheus import PrometheusSink

        sinks.append(PrometheusSink(config.sinks.prometheus, device_id=config.device))
    return sinks
