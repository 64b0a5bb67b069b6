"""Prometheus sink: the daemon's counters and latency histograms as a node_exporter textfile (.prom)."""

# node_exporter's textfile collector reads every *.prom file of one folder at each scrape, so the
# daemon needs no listening port and the unit's hardening stays as it is. The file is replaced
# atomically (temp file + rename) at every stats report; a scrape sees the old file or the new one.
# Unlike fsutil.write_atomic there is no fsync: the file is rewritten every interval, so durability
# buys nothing, while an fsync costs SD-card writes and can stall the pipeline thread (report()
# runs between frames). After a power cut the next report replaces whatever the disk kept.
# The histograms are cumulative since the sink opened, as Prometheus expects (a restart is a
# counter reset, which rate() handles).

from __future__ import annotations

import bisect
import logging
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge import __version__
from edge.errors import SinkError
from edge.fsutil import check_writable, write_atomic
from edge.sinks import sink_counters

if TYPE_CHECKING:
    from edge.config import PrometheusSinkConfig
    from edge.record import Record

log = logging.getLogger(__name__)

PREFIX = "mnv1_edge_"
INFERENCE_BUCKETS_S = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0)
LATENCY_BUCKETS_S = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Bits of the firmware's get_throttled mask (vcgencmd get_throttled), when the stats carry it.
THROTTLE_BITS = {
    0: "under_voltage",
    1: "arm_frequency_capped",
    2: "throttled",
    3: "soft_temperature_limit",
    16: "under_voltage_occurred",
    17: "arm_frequency_capped_occurred",
    18: "throttled_occurred",
    19: "soft_temperature_limit_occurred",
}


class Histogram:
    """Cumulative buckets in seconds, rendered in the exposition format (_bucket, _sum, _count)."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        if math.isnan(value):
            return
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str, labels: str) -> list[str]:
        out, running = [], 0
        for bound, n in zip((*self.bounds, math.inf), self.counts, strict=True):
            running += n
            le = "+Inf" if bound == math.inf else repr(bound)
            out.append(f'{name}_bucket{{{labels},le="{le}"}} {running}')
        out += [f"{name}_sum{{{labels}}} {_num(self.sum)}", f"{name}_count{{{labels}}} {self.count}"]
        return out


class PrometheusSink:
    """The Sink protocol: `write` feeds the histograms, `report` writes the whole file."""

    name = "prometheus"

    def __init__(self, config: PrometheusSinkConfig, device_id: str) -> None:
        self.config = config
        self.path = Path(config.path)
        self.device_id = device_id
        self.inference = Histogram(INFERENCE_BUCKETS_S)
        self.latency = Histogram(LATENCY_BUCKETS_S)
        self.answer_changes = 0
        self.model_sha = ""
        self._answer: str | None = None
        self._written = 0
        self._errors = 0
        self._failing = False

    def open(self) -> None:
        try:
            check_writable(self.path, "Prometheus metrics")
        except SinkError as exc:
            raise SinkError(f"{exc}; check sinks.prometheus.path") from exc

    def write(self, record: Record) -> None:
        self.inference.observe(record.inference_ms / 1e3)
        self.latency.observe(max(0.0, record.ts - record.frame_ts))
        self.model_sha = record.model_sha256
        answer = record.the_answer
        if self._answer is not None and answer != self._answer:
            self.answer_changes += 1
        self._answer = answer

    def report(self, stats: Mapping[str, Any]) -> None:
        text = self.render(stats)
        try:
            # No fsync: the file is rewritten every interval, and an fsync per report would wear the SD card.
            write_atomic(self.path, text.encode(), durable=False)
        except OSError as exc:  # a full or read-only disk must not stop the daemon: count, say once
            self._errors += 1
            if not self._failing:
                log.warning("%s: cannot write Prometheus metrics (%s); retrying at every stats report", self.path, exc.strerror or exc)
            self._failing = True
            return
        if self._failing:
            log.info("%s: Prometheus metrics written again", self.path)
        self._failing = False
        self._written += 1

    def stats(self) -> dict[str, Any]:
        return {"written": self._written, "errors": self._errors}

    def flush(self) -> None:
        pass  # each report is written whole

    def close(self) -> None:
        pass  # the last file stays: node_exporter's node_textfile_mtime_seconds tells its age

    def render(self, stats: Mapping[str, Any]) -> str:
        """The whole .prom file for these stats and the records seen so far."""
        labels = f'device_id="{_escape(self.device_id)}",model_sha="{_escape(self.model_sha[:12] or "unknown")}"'
        out = _Writer(labels)
        out.metric("info", "gauge", "Build and model of this daemon (always 1)", [(f'version="{_escape(__version__)}"', 1)])
        _pipeline(out, stats)
        out.one("answer_changes_total", "counter", "Changes of the published answer", self.answer_changes)
        out.histogram("inference_seconds", "Model inference time per frame", self.inference)
        out.histogram("latency_seconds", "End to end: frame captured to record published", self.latency)
        _device(out, stats)
        _sinks(out, stats)
        return out.text()


def _pipeline(out: _Writer, stats: Mapping[str, Any]) -> None:
    source = stats.get("source") or {}
    out.one("frames_total", "counter", "Frames classified", stats.get("frames", 0))
    out.one("published_total", "counter", "Records published to the sinks", stats.get("published", 0))
    out.one("dropped_frames_total", "counter", "Frames replaced by a newer one before classification", stats.get("dropped", 0))
    out.one("stalled_events_total", "counter", "Times the source stopped delivering frames", _event_count(stats, source, STALL_KEYS))
    out.one("frozen_events_total", "counter", "Times the camera kept delivering the same frame", _event_count(stats, source, FROZEN_KEYS))
    out.one("camera_reopens_total", "counter", "Camera reopens and stream reconnects", _event_count(stats, source, REOPEN_KEYS))
    if "view_moved" in source:  # a fixed-camera model's moved-camera check (edge/sources/moved.py)
        out.one("view_moved_total", "counter", "Times the view was found moved or unlike the model's training frames", source["view_moved"])
        out.one("view_off", "gauge", "1 while the view is not as the model was trained", source.get("view_off", 0))
        out.one("view_shift_pixels", "gauge", "The view's last estimated shift from training, px of the 128 px input", source.get("view_shift_px", 0))
    out.one("fps", "gauge", "Frames classified per second over the last stats interval", stats.get("fps", 0.0))
    out.one("uptime_seconds", "gauge", "Seconds since the daemon started", stats.get("uptime_s", 0.0))
    if "kernel_fallback" in stats:  # the Engine's kernel check at load (docs/numerics.md)
        help_ = "1 when XNNPACK disagreed with the reference kernels at load: the built-in kernels classify"
        out.one("kernel_fallback", "gauge", help_, stats["kernel_fallback"])
    if "snapshots_saved" in stats:  # only with [snapshots] enabled
        out.one("snapshots_saved_total", "counter", "Evidence snapshots saved", stats["snapshots_saved"])
        out.one("snapshots_bytes", "gauge", "Bytes in the snapshot folder", stats.get("snapshots_bytes", 0))
        dropped = [(f'reason="{k}"', stats.get(f"snapshots_{k}", 0)) for k in ("dropped", "skipped", "no_room", "errors")]
        out.metric(
            "snapshots_lost_total",
            "counter",
            "Snapshots deleted for the folder's caps, skipped behind, not taken for want of room, or failed",
            dropped,
        )


def _device(out: _Writer, stats: Mapping[str, Any]) -> None:
    if stats.get("cpu_temp_c") is not None:
        out.one("cpu_temperature_celsius", "gauge", "CPU temperature", stats["cpu_temp_c"])
    flags = _throttle_flags(stats.get("throttled"))
    if flags:
        out.metric("throttled", "gauge", "Firmware throttling and under-voltage flags (1 = set)", [(f'flag="{k}"', v) for k, v in flags])


def _sinks(out: _Writer, stats: Mapping[str, Any]) -> None:
    sinks = sink_counters(stats)
    raised: Mapping[str, int] = stats.get("sink_errors", {})  # calls the daemon saw a sink raise on
    errors = [(f'sink="{_escape(k)}"', _sink_errors(v) + int(raised.get(k, 0))) for k, v in sinks.items()]
    out.metric("sink_write_errors_total", "counter", "Records or reports a sink failed to write", errors)
    spool = sinks.get("mqtt")
    if spool is not None and "spool_depth" in spool:
        out.one("spool_depth", "gauge", "Records waiting in the MQTT spool", spool["spool_depth"])
        out.one("spool_bytes", "gauge", "Bytes in the MQTT spool", spool.get("spool_bytes", 0))
        reasons = [(f'reason="{k.removeprefix("spool_dropped_")}"', v) for k, v in spool.items() if k.startswith("spool_dropped_")]
        out.metric("spool_dropped_total", "counter", "Records dropped from the spool unsent, by reason", reasons)


STALL_KEYS = ("stalls", "stalled_events", "stall_events")
FROZEN_KEYS = ("frozen", "frozen_events", "freezes")
REOPEN_KEYS = ("reopens", "reconnects")


class _Writer:
    """Exposition-format lines with HELP and TYPE once per family, the common labels on every sample."""

    def __init__(self, labels: str) -> None:
        self.labels = labels
        self.lines: list[str] = []

    def metric(self, name: str, kind: str, doc: str, samples: Iterable[tuple[str, Any]]) -> None:
        full = PREFIX + name
        self.lines += [f"# HELP {full} {doc}", f"# TYPE {full} {kind}"]
        for extra, value in samples:
            labels = f"{self.labels},{extra}" if extra else self.labels
            self.lines.append(f"{full}{{{labels}}} {_num(value)}")

    def one(self, name: str, kind: str, doc: str, value: Any) -> None:
        self.metric(name, kind, doc, [("", value)])

    def histogram(self, name: str, doc: str, hist: Histogram) -> None:
        full = PREFIX + name
        self.lines += [f"# HELP {full} {doc}", f"# TYPE {full} histogram", *hist.lines(full, self.labels)]

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _event_count(stats: Mapping[str, Any], source: Mapping[str, Any], keys: tuple[str, ...]) -> int:
    """The sum of whichever of `keys` the stats or the source's stats carry (0 when none does)."""
    total = 0
    for where in (stats, source):
        total += sum(int(where[k]) for k in keys if isinstance(where.get(k), int) and not isinstance(where.get(k), bool))
    return total


def _sink_errors(counters: Mapping[str, Any]) -> int:
    keys = ("errors", "write_errors", "mqtt_publish_errors", "spool_write_errors")
    return sum(int(counters[k]) for k in keys if isinstance(counters.get(k), int))


def _throttle_flags(value: Any) -> list[tuple[str, int]]:
    """(flag, 0/1) from the firmware's bit mask (int or "0x50005") or a dict of named flags."""
    if isinstance(value, Mapping):
        return [(_escape(str(k)), int(bool(v))) for k, v in value.items()]
    if isinstance(value, str):
        try:
            value = int(value, 16)
        except ValueError:
            return []
    if isinstance(value, int) and not isinstance(value, bool):
        return [(name, (value >> bit) & 1) for bit, name in THROTTLE_BITS.items()]
    return []


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if value is None:
        return "NaN"
    number = float(value)
    if math.isinf(number):
        return "+Inf" if number > 0 else "-Inf"
    return repr(int(number)) if number.is_integer() and abs(number) < 2**53 else repr(number)
