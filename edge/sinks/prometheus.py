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
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge import __version__
from edge.errors import SinkError
from edge.fsutil import check_writable, write_atomic
from edge.stats import SinkCounters
from edge.throttle import BITS, SINCE_BOOT

if TYPE_CHECKING:
    from edge.config import PrometheusSinkConfig
    from edge.record import Record
    from edge.stats import StatsReport

log = logging.getLogger(__name__)

PREFIX = "mnv1_edge_"
INFERENCE_BUCKETS_S = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0)
LATENCY_BUCKETS_S = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# The firmware's get_throttled bits (edge/throttle.py) as `flag` labels: under_voltage, …, throttled_occurred.
_FLAGS = {bit: name.lower().replace(" ", "_").replace("-", "_") for bit, name in BITS.items()}
THROTTLE_FLAGS = _FLAGS | {bit + SINCE_BOOT: f"{name}_occurred" for bit, name in _FLAGS.items()}


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

    def report(self, stats: StatsReport) -> None:
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

    def stats(self) -> SinkCounters:
        return SinkCounters({"written": self._written, "errors": self._errors}, errors=self._errors)

    def flush(self) -> None:
        pass  # each report is written whole

    def close(self) -> None:
        pass  # the last file stays: node_exporter's node_textfile_mtime_seconds tells its age

    def render(self, stats: StatsReport) -> str:
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


def _pipeline(out: _Writer, stats: StatsReport) -> None:
    w, source = stats.window, stats.source.counters
    out.one("frames_total", "counter", "Frames classified", w.frames)
    out.one("published_total", "counter", "Records published to the sinks", w.published)
    out.one("dropped_frames_total", "counter", "Frames replaced by a newer one before classification", stats.source.dropped)
    out.one("stalled_events_total", "counter", "Times the source stopped delivering frames", stats.stalls)
    out.one("frozen_events_total", "counter", "Times the camera kept delivering the same frame", source.frozen or 0)
    out.one("camera_reopens_total", "counter", "Camera reopens and stream reconnects", source.reopened)
    if source.view_moved is not None:  # a fixed-camera model's moved-camera check (edge/sources/moved.py)
        out.one("view_moved_total", "counter", "Times the view was found moved or unlike the model's training frames", source.view_moved)
        out.one("view_off", "gauge", "1 while the view is not as the model was trained", source.view_off or 0)
        out.one("view_shift_pixels", "gauge", "The view's last estimated shift from training, px of the 128 px input", source.view_shift_px or 0)
    if source.light_changed is not None:  # a model with a training light's light check (edge/sources/light.py)
        out.one("light_changed_total", "counter", "Times the frames left the light the model was trained in", source.light_changed)
        out.one("light_off", "gauge", "1 while the frames are out of the light the model was trained in", source.light_off or 0)
        if source.light_luma is not None:
            out.one("light_luma", "gauge", "The last frame checked's brightness (mean luma, 0-255)", source.light_luma)
    out.one("fps", "gauge", "Frames classified per second over the last stats interval", w.fps)
    out.one("uptime_seconds", "gauge", "Seconds since the daemon started", w.uptime_s)
    if stats.kernels is not None:  # the Engine's kernel check at load (docs/design/numerics.md)
        help_ = "1 when XNNPACK disagreed with the reference kernels at load: the built-in kernels classify"
        out.one("kernel_fallback", "gauge", help_, int(stats.kernels.fallback))
    snapshots = stats.snapshots
    if snapshots is not None:
        out.one("snapshots_saved_total", "counter", "Evidence snapshots saved", snapshots.saved)
        out.one("snapshots_bytes", "gauge", "Bytes in the snapshot folder", snapshots.bytes)
        lost = {"dropped": snapshots.dropped, "skipped": snapshots.skipped, "no_room": snapshots.no_room, "errors": snapshots.errors}
        out.metric(
            "snapshots_lost_total",
            "counter",
            "Snapshots deleted for the folder's caps, skipped behind, not taken for want of room, or failed",
            [(f'reason="{k}"', v) for k, v in lost.items()],
        )


def _device(out: _Writer, stats: StatsReport) -> None:
    w = stats.window
    if w.cpu_temp_c is not None:
        out.one("cpu_temperature_celsius", "gauge", "CPU temperature", w.cpu_temp_c)
    if w.throttled is not None:
        flags = [(f'flag="{name}"', w.throttled >> bit & 1) for bit, name in THROTTLE_FLAGS.items()]
        out.metric("throttled", "gauge", "Firmware throttling and under-voltage flags (1 = set)", flags)


def _sinks(out: _Writer, stats: StatsReport) -> None:
    errors = [(f'sink="{_escape(name)}"', sink.errors) for name, sink in stats.sinks.items()]
    out.metric("sink_write_errors_total", "counter", "Records or reports a sink failed to write", errors)
    spool = next((sink.spool for sink in stats.sinks.values() if sink.spool is not None), None)
    if spool is not None:
        out.one("spool_depth", "gauge", "Records waiting in the MQTT spool", spool.depth)
        out.one("spool_bytes", "gauge", "Bytes in the MQTT spool", spool.bytes)
        reasons = [('reason="size"', spool.dropped_size), ('reason="age"', spool.dropped_age), ('reason="full"', spool.dropped_full)]
        out.metric("spool_dropped_total", "counter", "Records dropped from the spool unsent, by reason", reasons)


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
