"""The daemon's stats report: one frozen value for the journal line, every sink, and the wire (`to_dict`)."""

# The daemon builds one StatsReport per stats interval (edge/daemon/loop.py `snapshot`) from its own
# window figures (edge/daemon/stats.py), the source's counters, each sink's and the snapshot writer's.
# Readers in this process take the typed value; `to_dict` is the one wire format: the JSON the MQTT
# sink publishes on <prefix>stats, which Home Assistant's templates and `mnv1-edge fleet` read, also
# from daemons of other versions (edge/fleet/state.py stays a parser of that JSON). Keys are only
# ever added. A new figure is a field here and one line in its class's `to_dict`.

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class Percentiles:
    p50: float | None = None  # None: no frame in the window
    p95: float | None = None

    def to_dict(self) -> dict[str, float | None]:
        return {"p50": self.p50, "p95": self.p95}


@dataclass(frozen=True)
class Window:
    """The daemon's own figures: since it started, or over the window since the last report."""

    ts: str  # RFC 3339, wall clock: lets a late reader of a retained copy judge its age
    window_s: float
    last_frame_age_s: float | None
    uptime_s: float
    fps: float  # over the window
    frames: int  # classified since the start
    published: int  # records handed to the sinks since the start
    inference_ms: Percentiles
    latency_ms: Percentiles
    cpu_temp_c: float | None = None  # None: no thermal zone
    throttled: int | None = None  # the firmware's get_throttled mask (edge/throttle.py); None: not a Raspberry Pi

    def to_dict(self) -> dict[str, Any]:
        out = {
            "ts": self.ts,
            "window_s": self.window_s,
            "last_frame_age_s": self.last_frame_age_s,
            "uptime_s": self.uptime_s,
            "fps": self.fps,
            "frames": self.frames,
            "published": self.published,
            "inference_ms": self.inference_ms.to_dict(),
            "latency_ms": self.latency_ms.to_dict(),
            "cpu_temp_c": self.cpu_temp_c,
        }
        if self.throttled is not None:
            out["throttled"] = self.throttled
        return out


@dataclass(frozen=True)
class SourceCounters:
    """A source's own counters, since it was made. None: this kind of source has no such counter
    (and the wire leaves it out)."""

    read: int = 0  # frames read
    skipped: int | None = None  # images: unreadable files skipped
    passes: int | None = None  # images: passes over the folder
    reconnects: int | None = None  # video, v4l2: reconnects of a stream or webcam
    reopens: int | None = None  # picamera2: camera reopens
    errors: int | None = None  # failed reads or captures
    damaged: int | None = None  # video, v4l2: packets the decoder rejected, skipped
    frozen: int | None = None  # live sources: freezes detected (edge/sources/frozen.py)
    frozen_reopens: int | None = None
    view_shift_px: int | None = None  # a fixed-camera model's moved-camera check (edge/sources/moved.py)
    view_moved: int | None = None
    view_off: int | None = None  # 1 while the view is not as the model was trained
    light_luma: int | None = None  # a model with a light_range's light check (edge/sources/light.py): the last frame checked's brightness, 0-255
    light_changed: int | None = None  # times the frames left the light the model was trained in
    light_off: int | None = None  # 1 while they are out of it

    @property
    def reopened(self) -> int:
        """Camera reopens and stream reconnects."""
        return (self.reopens or 0) + (self.reconnects or 0)

    def to_dict(self) -> dict[str, int]:
        return {f.name: value for f in fields(self) if (value := getattr(self, f.name)) is not None}


@dataclass(frozen=True)
class SourceReport:
    """The capture side: the source's name, what the capture thread saw, and the source's own counters."""

    name: str
    captured: int
    dropped: int  # frames a newer one replaced before classification (live sources)
    counters: SourceCounters

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "captured": self.captured, "dropped": self.dropped, **self.counters.to_dict()}


@dataclass(frozen=True)
class Kernels:
    """Which kernels classify the frames (edge/model/engine.py: "xnnpack" or "builtin"); `fallback`:
    at load XNNPACK disagreed with the reference kernels, so the built-in ones run (docs/design/numerics.md)."""

    name: str
    fallback: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"kernels": self.name, "kernel_fallback": int(self.fallback)}


@dataclass(frozen=True)
class SpoolCounters:
    """The MQTT sink's durable spool (edge/sinks/mqtt/spool)."""

    depth: int = 0  # records stored and not yet acknowledged
    bytes: int = 0  # bytes on disk
    appended: int = 0
    dropped_size: int = 0  # dropped unsent, by reason: over max_bytes, over max_age_s, a full disk
    dropped_age: int = 0
    dropped_full: int = 0
    write_errors: int = 0  # records it could not store
    bytes_appended: int = 0
    cursor_bytes: int = 0

    @property
    def dropped(self) -> int:
        return self.dropped_size + self.dropped_age + self.dropped_full

    def to_dict(self) -> dict[str, int]:
        out = {"spool_depth": self.depth, "spool_bytes": self.bytes, "spool_dropped": self.dropped}
        return out | {f"spool_{f.name}": getattr(self, f.name) for f in fields(self)[2:]}


@dataclass(frozen=True)
class SinkCounters:
    """One sink's counters: all of them by their wire names, and what they mean alike for every sink."""

    counters: Mapping[str, int | bool | str]  # the JSON object under the sink's name
    lost: int = 0  # records it lost for good: a failed write, dropped from a spool or at close, a call that raised
    errors: int = 0  # records or reports it failed to write, calls that raised included
    raised: int = 0  # calls the daemon saw it raise on (edge/daemon/fanout.py)
    spool: SpoolCounters | None = None  # the MQTT sink's spool


@dataclass(frozen=True)
class SnapshotCounters:
    """The evidence snapshot writer's (edge/daemon/snapshots.py), when [snapshots] is enabled."""

    saved: int = 0
    dropped: int = 0  # deleted for the folder's caps
    skipped: int = 0  # not taken: the writer was behind
    no_room: int = 0  # not taken: no room, or the writer failing
    errors: int = 0  # writes that failed
    view_errors: int = 0  # saved without the larger view
    files: int = 0  # in the folder now
    bytes: int = 0

    def to_dict(self) -> dict[str, int]:
        return {f"snapshots_{f.name}": getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class StatsReport:
    """One stats interval's report."""

    window: Window
    source: SourceReport
    sinks: Mapping[str, SinkCounters]  # by sink name
    snapshots: SnapshotCounters | None = None  # None: [snapshots] off
    stalled: bool = False  # the daemon's verdict: no frame for source.stall_timeout_s
    stalls: int = 0  # times the source stalled
    stats_interval_s: float = 0.0  # so `fleet` can judge staleness
    heartbeat_s: float = 0.0
    kernels: Kernels | None = None  # None: not known (a report made without an engine)

    def to_dict(self) -> dict[str, Any]:
        """The wire format; every value JSON-ready."""
        out: dict[str, Any] = {**self.window.to_dict(), "dropped": self.source.dropped, "source": self.source.to_dict()}
        if self.kernels is not None:
            out |= self.kernels.to_dict()
        # A sink whose own stats() raised has no counters of its own: only its raised calls show.
        out |= {name: dict(sink.counters) for name, sink in self.sinks.items() if sink.counters}
        raised = {name: sink.raised for name, sink in self.sinks.items() if sink.raised}
        if raised:
            out["sink_errors"] = raised
        if self.snapshots is not None:
            out |= self.snapshots.to_dict()
        out |= {"stalled": self.stalled, "stalls": self.stalls, "stats_interval_s": self.stats_interval_s, "heartbeat_s": self.heartbeat_s}
        return out
