"""Result sinks: the protocol, one spec per sink, and a factory that imports each kind's dependency lazily."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from edge.config import Config, FileSinkConfig, MqttSinkConfig, PrometheusSinkConfig, StdoutSinkConfig

if TYPE_CHECKING:
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


@runtime_checkable
class SnapshotPublisher(Protocol):
    """A sink that also publishes the newest evidence snapshot (the MQTT sink: retained on <prefix>snapshot)."""

    def snapshot(self, jpeg: bytes) -> None: ...


@dataclass(frozen=True)
class SinkSpec:
    """Everything one sink is made from. The fan-out keeps a running sink across a reload when its
    spec is unchanged (an MQTT session survives it) and replaces it when it is not."""

    name: str  # stdout, file, mqtt or prometheus
    config: StdoutSinkConfig | FileSinkConfig | MqttSinkConfig | PrometheusSinkConfig
    device: str = ""  # MQTT topics, Prometheus labels
    # MQTT, for Home Assistant discovery: the names a record's `answer` can take besides "none" (the
    # configured groups, or a custom model's labels; empty for ImageNet's 1001), one binary_sensor
    # each; snapshot JPEGs published (an image entity); a fixed-camera model's view watched (a problem sensor).
    answers: tuple[str, ...] = ()
    snapshots: bool = False
    view_check: bool = False
    light_check: bool = False  # frames watched for light the model was not trained in (a problem sensor)
    # Not compared: the MQTT sink warns when the file holding its secrets is world-readable, and
    # tells `seq_floor(n)` that record numbers up to n were used as this device (edge/sinks/mqtt/clash.py).
    config_path: Path | None = field(default=None, compare=False)
    seq_floor: Callable[[int], None] | None = field(default=None, compare=False)


def sink_specs(
    config: Config,
    config_path: Path | None = None,
    answers: tuple[str, ...] = (),
    view_check: bool = False,
    seq_floor: Callable[[int], None] | None = None,
    light_check: bool = False,
) -> list[SinkSpec]:
    """The enabled sinks' specs, in the order they get each record."""
    sinks = config.sinks
    specs = [SinkSpec("stdout", sinks.stdout)] if sinks.stdout.enabled else []
    if sinks.file.enabled:
        specs.append(SinkSpec("file", sinks.file))
    if sinks.mqtt.enabled:
        # config.snapshots.published: the newest snapshot JPEG, retained on <prefix>snapshot.
        mqtt = SinkSpec("mqtt", sinks.mqtt, config.device, answers, config.snapshots.published, view_check, light_check, config_path, seq_floor)
        specs.append(mqtt)
    if sinks.prometheus.enabled:
        specs.append(SinkSpec("prometheus", sinks.prometheus, config.device))
    return specs


def make_sink(spec: SinkSpec) -> Sink:
    """The sink `spec` describes, not yet opened; the MQTT one (and paho) is imported only when made."""
    c = spec.config
    if isinstance(c, StdoutSinkConfig):
        from edge.sinks.stdout import StdoutSink

        return StdoutSink(text=c.format == "text")
    if isinstance(c, FileSinkConfig):
        from edge.sinks.file import FileSink

        return FileSink(c)
    if isinstance(c, MqttSinkConfig):
        from edge.sinks.mqtt.sink import MqttSink

        return MqttSink(
            c,
            device_id=spec.device,
            config_path=spec.config_path,
            answers=spec.answers,
            snapshots=spec.snapshots,
            view_check=spec.view_check,
            light_check=spec.light_check,
            seq_floor=spec.seq_floor,
        )
    from edge.sinks.prometheus import PrometheusSink

    return PrometheusSink(c, device_id=spec.device)
