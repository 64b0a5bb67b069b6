"""Running statistics for the periodic stats line: fps, latency percentiles, CPU temperature."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edge.record import rfc3339
from edge.sinks import sink_counters

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

    def __init__(self, window: int = 4096) -> None:
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

    def snapshot(self, **extra: Any) -> dict[str, Any]:
        """A JSON-ready dict for the log line and every sink's report(); starts a new window."""
        now = time.monotonic()
        n = min(self._in_window, len(self._inference))
        idx = (self._i - n + np.arange(n)) % len(self._inference)

        def pct(values: np.ndarray) -> dict[str, float | None]:
            if n == 0:
                return {"p50": None, "p95": None}
            p50, p95 = np.percentile(values[idx], (50, 95))
            return {"p50": round(float(p50), 3), "p95": round(float(p95), 3)}

        last = self._last_frame
        out: dict[str, Any] = {
            "ts": rfc3339(time.time()),  # wall clock: lets a late reader of a retained copy judge its age
            "window_s": round(now - self._window_start, 1),
            "last_frame_age_s": round(now - last, 1) if last is not None else None,
            "uptime_s": round(now - self.started, 1),
            "fps": round(self.fps(now), 2),
            "frames": self.frames,
            "published": self.published,
            "inference_ms": pct(self._inference),
            "latency_ms": pct(self._latency),
            "cpu_temp_c": read_temperature(self._thermal),
        }
        out.update(extra)
        self._in_window = 0
        self._window_start = now
        return out


# The MQTT sink loses a record only when its spool drops it (size, age, full disk), cannot store it
# (another write error) or is closing; the others count their own `records_lost`.
_LOST_KEYS = {"mqtt": ("spool_dropped", "spool_write_errors", "mqtt_dropped_closed")}


def records_lost(stats: Mapping[str, Any]) -> dict[str, int]:
    """Records each sink lost for good (write failed, dropped from the spool, or the sink raised):
    `published` counts records handed to the sinks, this is what did not arrive."""
    raised: Mapping[str, int] = stats.get("sink_errors", {})
    lost: dict[str, int] = {}
    for name, own in sink_counters(stats).items():
        lost[name] = sum(int(own.get(key, 0)) for key in _LOST_KEYS.get(name, ("records_lost",))) + int(raised.get(name, 0))
    return lost


def format_line(stats: dict[str, Any]) -> str:
    """The human stats line for the journal, ending with each sink's counters."""
    inf, lat = stats["inference_ms"], stats["latency_ms"]
    temp = f"{stats['cpu_temp_c']:.1f} °C" if stats.get("cpu_temp_c") is not None else "n/a"
    line = (
        f"stats: {stats['fps']:.1f} fps, inference p50 {inf['p50']} ms p95 {inf['p95']} ms, "
        f"latency p50 {lat['p50']} ms p95 {lat['p95']} ms, frames {stats['frames']}, published {stats['published']}, "
        f"dropped {stats.get('dropped', 0)}, cpu {temp}, source {stats.get('source', {})}"
        + (", kernels TFLite built-in (XNNPACK disagreed at load)" if stats.get("kernel_fallback") else "")
    )
    sinks = [f"{name}: {format_counters(name, value)}" for name, value in sink_counters(stats).items()]
    snapshots = {k: v for k, v in stats.items() if k.startswith("snapshots_")}
    if snapshots:
        sinks.append(f"snapshots: {format_counters('snapshots', snapshots)}")
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
