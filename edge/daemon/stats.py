"""Running statistics for the periodic report: fps, latency percentiles, CPU temperature, the firmware's flags; the journal line."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edge.record import rfc3339
from edge.stats import Percentiles, StatsReport, Window
from edge.throttle import FirmwareFlags

THERMAL = Path("/sys/class/thermal")


def find_cpu_thermal_zone(root: Path = THERMAL) -> Path | None:
    """The zone whose type names the CPU/SoC (cpu-thermal on a Pi), else the first zone."""
    try:
        zones = sorted(root.glob("thermal_zone*"))
    except OSError:
        return None
    for zone in zones:
        try:
            kind = (zone / "type").read_text().strip().lower()
        except OSError:
            continue
        if any(word in kind for word in ("cpu", "soc", "x86_pkg")):
            return zone / "temp"
    return zones[0] / "temp" if zones else None


def read_temperature(path: Path | None) -> float | None:
    if path is None:
        return None
    try:
        return round(int(path.read_text().strip()) / 1000.0, 1)
    except (OSError, ValueError):
        return None


class Stats:
    """Per-frame figures in preallocated rings; `snapshot` summarises the window since the last one."""

    def __init__(self, window: int = 4096, firmware: FirmwareFlags | None = None) -> None:
        self._inference = np.zeros(window, np.float64)
        self._latency = np.zeros(window, np.float64)
        self._i = 0
        self._in_window = 0
        self.frames = 0
        self.published = 0
        self.started = time.monotonic()
        self._window_start = self.started
        self._last_frame: float | None = None
        self._thermal = find_cpu_thermal_zone()
        self._firmware = firmware or FirmwareFlags()

    def add(self, inference_ms: float, latency_ms: float) -> None:
        i = self._i
        self._inference[i] = inference_ms
        self._latency[i] = latency_ms
        self._i = (i + 1) % len(self._inference)
        self._in_window += 1
        self.frames += 1
        self._last_frame = time.monotonic()

    def fps(self, now: float | None = None) -> float:
        elapsed = (now if now is not None else time.monotonic()) - self._window_start
        return self._in_window / elapsed if elapsed > 0 else 0.0

    def snapshot(self) -> Window:
        """This window's figures; starts a new window."""
        now = time.monotonic()
        n = min(self._in_window, len(self._inference))
        idx = (self._i - n + np.arange(n)) % len(self._inference)

        def pct(values: np.ndarray) -> Percentiles:
            if n == 0:
                return Percentiles()
            p50, p95 = np.percentile(values[idx], (50, 95))
            return Percentiles(round(float(p50), 3), round(float(p95), 3))

        last = self._last_frame
        flags = self._firmware.read()
        window = Window(
            ts=rfc3339(time.time()),
            window_s=round(now - self._window_start, 1),
            last_frame_age_s=round(now - last, 1) if last is not None else None,
            uptime_s=round(now - self.started, 1),
            fps=round(self.fps(now), 2),
            frames=self.frames,
            published=self.published,
            inference_ms=pct(self._inference),
            latency_ms=pct(self._latency),
            cpu_temp_c=read_temperature(self._thermal),
            throttled=flags[0] if flags is not None else None,
        )
        self._in_window = 0
        self._window_start = now
        return window


def format_line(report: StatsReport) -> str:
    """The human stats line for the journal, ending with each sink's counters."""
    w = report.window
    inf, lat = w.inference_ms, w.latency_ms
    temp = f"{w.cpu_temp_c:.1f} °C" if w.cpu_temp_c is not None else "n/a"
    throttled = f", throttled 0x{w.throttled:x}" if w.throttled is not None else ""
    line = (
        f"stats: {w.fps:.1f} fps, inference p50 {inf.p50} ms p95 {inf.p95} ms, "
        f"latency p50 {lat.p50} ms p95 {lat.p95} ms, frames {w.frames}, published {w.published}, "
        f"dropped {report.source.dropped}, cpu {temp}{throttled}, source {report.source.to_dict()}"
        + (", kernels TFLite built-in (XNNPACK disagreed at load)" if report.kernels is not None and report.kernels.fallback else "")
    )
    sinks = [f"{name}: {format_counters(name, sink.counters)}" for name, sink in report.sinks.items() if sink.counters]
    if report.snapshots is not None:
        sinks.append(f"snapshots: {format_counters('snapshots', report.snapshots.to_dict())}")
    return "; ".join([line, *sinks])


def format_counters(name: str, counters: Mapping[str, Any]) -> str:
    """`written 10, errors 0`; a sink's own name prefix (mqtt_connected) is dropped for brevity."""
    parts = []
    for key, value in counters.items():
        short = key.removeprefix(f"{name}_")
        if isinstance(value, Mapping):
            value = format_counters(short, value).join("()")
        elif isinstance(value, bool):
            value = "yes" if value else "no"
        parts.append(f"{short.replace('_', ' ')} {value}")
    return ", ".join(parts) or "-"
