"""The fleet as a text table (one row per device) or as JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from edge.fleet.state import Row

COLUMNS = ("DEVICE", "STATUS", "ANSWER", "AGE", "FPS", "INF P50", "DROPPED", "SPOOL", "SPOOL DROPS", "MODEL", "VERSION", "NOTE")


def age(seconds: float | None) -> str:
    """3s, 4m, 2h, 5d: short enough for a column."""
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def _cell(value: Any, fmt: str = "{}") -> str:
    return "-" if value is None else fmt.format(value)


def cells(row: Row) -> tuple[str, ...]:
    return (
        row.device_id,
        row.status,
        _cell(row.answer),
        age(row.answer_age_s),
        _cell(row.fps, "{:.1f}"),
        _cell(row.inference_p50_ms, "{:.2f} ms"),
        _cell(row.dropped),
        _cell(row.spool_depth),
        _cell(row.spool_dropped),
        _cell(row.model_sha[:8] if row.model_sha else None),
        _cell(row.version),
        row.reason,
    )


def render_table(rows: Sequence[Row]) -> str:
    """Left-aligned columns two spaces apart; a summary line below."""
    if not rows:
        return "no devices"
    lines = [COLUMNS, *(cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]
    text = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines]
    bad = [r for r in rows if not r.ok]
    text.append(f"{len(rows)} devices, {len(rows) - len(bad)} ok" + (f", {len(bad)} not: {', '.join(r.device_id for r in bad)}" if bad else ""))
    return "\n".join(text)


def render_json(rows: Sequence[Row], broker: str, prefix: str) -> str:
    return json.dumps({"broker": broker, "prefix": prefix, "ok": all(r.ok for r in rows) and bool(rows), "devices": [r.to_dict() for r in rows]})
