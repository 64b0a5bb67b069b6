"""The fleet as a text table (one row per device) or as JSON."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edge import jsontext
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


def _cell(value: Any, fmt: str = "{}", width: int = 40) -> str:
    return "-" if value is None else clean(fmt.format(value), width)


def clean(text: str, width: int) -> str:
    """One line of at most `width` characters: a device's own text (an answer, a version) may hold
    anything; line breaks or escape sequences in it must not break or repaint the table."""
    text = "".join(c if c.isprintable() else "?" for c in text[: width + 1])
    return text if len(text) <= width else text[: width - 1] + "…"


def cells(row: Row) -> tuple[str, ...]:
    return (
        clean(row.device_id, 40),
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
        clean(row.reason, 160),
    )


def render_table(rows: Sequence[Row], ignored: int = 0) -> str:
    """Left-aligned columns two spaces apart; a summary line below (with the messages ignored)."""
    if not rows:
        return "no devices"
    lines = [COLUMNS, *(cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]
    text = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines]
    bad = [r for r in rows if not r.ok]
    summary = f"{len(rows)} devices, {len(rows) - len(bad)} ok" + (
        f", {len(bad)} not: {', '.join(clean(r.device_id, 40) for r in bad)}" if bad else ""
    )
    if ignored:
        summary += f"; {ignored} {IGNORED}"
    text.append(summary)
    return "\n".join(text)


IGNORED = "messages ignored (not a JSON object, over 1 MiB or nested too deeply)"


def render_json(rows: Sequence[Row], broker: str, prefix: str, ignored: int = 0) -> str:
    """Always valid JSON: a figure a device sent as 1e308 that became infinite is null, not Infinity."""
    ok = all(r.ok for r in rows) and bool(rows)
    return jsontext.dumps({"broker": broker, "prefix": prefix, "ok": ok, "ignored": ignored, "devices": [r.to_dict() for r in rows]})
