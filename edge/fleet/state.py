"""What the fleet's MQTT messages say about each device, and the status rules (online, stalled, moved, light, stale, offline)."""

# Each daemon publishes under <prefix>/<device_id>/: `availability` (retained, "online", and
# "offline" from a clean stop or the broker's last will), `stats` (every stats interval; retained
# once the HA work lands) and `classification` (the records). A message's age comes from its own
# `ts` (the daemon's clock) when it has one, so a retained copy read long after is judged by when
# it was made; a live message without `ts` counts from its arrival.

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

DEFAULT_STALE_AFTER_S = 180.0
MAX_STALE_AFTER_S = 30 * 86400.0  # as --stale-after's bound: a stats_interval_s of 1e308 is no window
STALE_INTERVALS = 3  # stats intervals without news before a device is stale
# A stats or result payload is a few KB (top_k of 1001 classes ~60 KB); anything larger is not one,
# and one malformed retained message must not stall or blind the whole view.
MAX_PAYLOAD = 1 << 20
MAX_TEXT = 200  # characters of a device's own text (answer, version, …) a row keeps
KINDS = ("availability", "stats", "classification", "instance")
BAD = ("offline", "clash", "stale", "stalled", "moved", "light", "unknown")  # statuses that make the command exit non-zero


@dataclass
class Device:
    device_id: str
    availability: str | None = None
    stats: dict[str, Any] | None = None
    stats_at: float | None = None  # epoch seconds the stats were made (or arrived)
    result: dict[str, Any] | None = None
    result_at: float | None = None
    instance: str | None = None  # the daemon run publishing as this device (edge/sinks/mqtt/clash.py)
    live: list[str] = field(default_factory=list)  # instances seen live, in the order each last took over
    clash_at: float | None = None  # when an instance that had been superseded published again

    def saw(self, instance: str, retained: bool, now: float) -> None:
        """An instance id in a claim or stats. A restart brings a new id for good; an id that comes
        back after another took over means two daemons run as this device."""
        if retained:
            self.instance = self.instance or instance  # maybe an earlier run's: live news wins
            return
        self.instance = instance
        if self.live and self.live[-1] == instance:
            return
        if instance in self.live:
            self.clash_at = now
            self.live.remove(instance)
        self.live = [*self.live[-7:], instance]


@dataclass(frozen=True)
class Row:
    """One device's line: what the table and --json show."""

    device_id: str
    status: str  # online, clash, stalled, moved, light, stale, offline or unknown
    reason: str
    availability: str | None
    answer: str | None
    answer_age_s: float | None
    fps: float | None
    inference_p50_ms: float | None
    dropped: int | None
    spool_depth: int | None
    spool_dropped: int | None
    model_sha: str | None
    version: str | None
    stats_age_s: float | None
    last_frame_age_s: float | None
    stale_after_s: float
    instance: str | None = None

    @property
    def ok(self) -> bool:
        return self.status not in BAD

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


class Fleet:
    """Devices by id, fed one MQTT message at a time (not thread-safe: the caller holds a lock)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix.strip("/")
        self.devices: dict[str, Device] = {}
        self.ignored = 0  # messages that were not a JSON object where one was due (or too large, or nested too deeply)

    @property
    def topics(self) -> list[str]:
        return [f"{self.prefix}/+/{kind}" for kind in KINDS]

    def handle(self, topic: str, payload: bytes, retained: bool, now: float) -> None:
        parts = topic[len(self.prefix) + 1 :].split("/") if topic.startswith(self.prefix + "/") else []
        if len(parts) != 2 or parts[1] not in KINDS or not parts[0]:
            return
        device_id, kind = parts
        if not payload:  # an emptied retained message: that part of the device is gone
            if device_id in self.devices and kind == "availability":
                self.devices[device_id].availability = None
            return
        device = self.devices.setdefault(device_id, Device(device_id))
        if kind == "availability":
            device.availability = payload[:64].decode("utf-8", "replace").strip()
            return
        data = read_json(payload)
        if data is None:
            self.ignored += 1
            return
        instance = data.get("instance") if kind in ("instance", "stats") else None
        if isinstance(instance, str) and instance:
            device.saw(instance[:32], retained, now)
        if kind == "instance":
            return
        at = message_time(data.get("ts"), None if retained else now)
        if kind == "stats":
            device.stats, device.stats_at = data, at
        else:
            device.result, device.result_at = data, at

    def rows(self, now: float, stale_after: float | None = None) -> list[Row]:
        return [row(self.devices[d], now, stale_after) for d in sorted(self.devices)]


def read_json(payload: bytes) -> dict[str, Any] | None:
    """A payload's JSON object, or None for anything else: not JSON, not an object, over
    MAX_PAYLOAD bytes, or nested deeper than Python's parser can go (RecursionError)."""
    if len(payload) > MAX_PAYLOAD:
        return None
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def message_time(ts: Any, fallback: float | None) -> float | None:
    """Epoch seconds of an RFC 3339 `ts` (2026-11-24T01:27:54.123Z), else `fallback`."""
    if isinstance(ts, str) and len(ts) < 64:
        try:
            return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
        except (ValueError, OverflowError):
            pass
    return fallback


def stale_after_for(stats: dict[str, Any] | None, given: float | None) -> float:
    """--stale-after when given, else 3 stats intervals when the stats say theirs, else 180 s."""
    if given is not None:
        return given
    interval = _number((stats or {}).get("stats_interval_s"))
    if interval is not None and interval > 0:
        return min(STALE_INTERVALS * interval, MAX_STALE_AFTER_S)
    return DEFAULT_STALE_AFTER_S


def row(device: Device, now: float, stale_after: float | None = None) -> Row:
    stats = device.stats or {}
    limit = stale_after_for(device.stats, stale_after)
    stats_age = _age(device.stats_at, now)
    answer_age = _age(device.result_at, now)
    frame_age = stats.get("last_frame_age_s") if _is_number(stats.get("last_frame_age_s")) else None
    if frame_age is not None and stats_age is not None:
        frame_age = round(frame_age + stats_age, 1)  # the stats' figure, aged by how old they are
    status, reason = judge(device, limit, stats_age, answer_age, frame_age, _age(device.clash_at, now))
    result = device.result or {}
    inference = stats.get("inference_ms")
    return Row(
        device_id=device.device_id,
        status=status,
        reason=reason,
        availability=device.availability,
        answer=answer_of(result) if result else None,
        answer_age_s=answer_age,
        fps=_number(stats.get("fps")),
        inference_p50_ms=_number(inference.get("p50")) if isinstance(inference, dict) else None,
        dropped=_int(stats.get("dropped")),
        spool_depth=_int(_spool(stats, "spool_depth")),
        spool_dropped=_int(_spool(stats, "spool_dropped")),
        model_sha=_str(result.get("model_sha256") or stats.get("model_sha256")),
        version=_str(stats.get("version")),
        stats_age_s=stats_age,
        last_frame_age_s=frame_age,
        stale_after_s=limit,
        instance=device.instance,
    )


def judge(
    device: Device, limit: float, stats_age: float | None, answer_age: float | None, frame_age: float | None, clash_age: float | None = None
) -> tuple[str, str]:
    """(status, why); the first rule that applies wins."""
    stats = device.stats or {}
    if device.availability == "offline":
        return "offline", "availability offline (stopped, or the broker's last will)"
    # The daemons' own verdict (their stats), or ours: an instance that published again after another took over.
    if _spool(stats, "mqtt_clash") is True or (clash_age is not None and clash_age <= limit):
        other = _str(_spool(stats, "mqtt_clash_with"))
        seen = f"{other}, and instance {device.instance}" if other else "instances " + ", ".join(device.live[-2:])
        return "clash", f"two daemons publish as this device_id ({seen}): give each its own device_id"
    if stats_age is not None and stats_age > limit:
        return "stale", f"no stats for {stats_age:.0f} s (stale after {limit:g} s)"
    if stats.get("stalled") is True:
        return "stalled", "the daemon reports its source stalled"
    if frame_age is not None and frame_age > limit:
        return "stalled", f"no frame classified for {frame_age:.0f} s (stale after {limit:g} s)"
    source = stats.get("source")
    if isinstance(source, dict) and source.get("view_off") == 1:  # edge/sources/moved.py: a fixed-camera model's view is not as trained
        shift = source.get("view_shift_px")
        shown = f"{shift:g}" if _is_number(shift) else "?"
        return "moved", f"the view is not as the model was trained (shift {shown} px of 128): capture frames again and train again"
    if isinstance(source, dict) and source.get("light_off") == 1:  # edge/sources/light.py: frames out of the model's training light
        level = source.get("light_luma")
        shown = f"{level:g}" if _is_number(level) else "?"
        return "light", f"the frames are out of the light the model was trained in (brightness {shown} of 255): capture them and train again"
    # With publish = "change" a healthy device may publish only every heartbeat_s (in its stats).
    heartbeat = _number(stats.get("heartbeat_s"))
    result_limit = limit if heartbeat is None else (max(limit, 2 * heartbeat) if heartbeat > 0 else float("inf"))
    if answer_age is not None and answer_age > result_limit:
        return "stale", f"no result for {answer_age:.0f} s (stale after {result_limit:g} s)"
    if device.availability is None:
        return "unknown", "no availability message (not an mnv1-edge daemon, or its retained state was cleared)"
    if device.availability != "online":
        return "unknown", f"availability says {device.availability[:20]!r}, not online or offline"
    if device.stats is None:
        return "online", "no stats yet"
    return "online", ""


def answer_of(record: dict[str, Any]) -> str | None:
    """Record v2's `answer`, else the top-1 label of older records."""
    if isinstance(record.get("answer"), str):
        return _str(record["answer"])
    top = record.get("top_k")
    if isinstance(top, list) and top and isinstance(top[0], dict):
        return _str(top[0].get("label"))
    return None


def _spool(stats: dict[str, Any], key: str) -> Any:
    if key in stats:
        return stats[key]
    mqtt = stats.get("mqtt")
    return mqtt.get(key) if isinstance(mqtt, dict) else None


def _age(at: float | None, now: float) -> float | None:
    # A device clock ahead of ours would give a negative age: count it as fresh.
    return None if at is None else round(max(0.0, now - at), 1)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _number(value: Any) -> float | None:
    return float(value) if _is_number(value) else None


def _int(value: Any) -> int | None:
    return int(value) if _is_number(value) else None


def _str(value: Any) -> str | None:
    return value[:MAX_TEXT] if isinstance(value, str) and value else None
