"""journald-friendly logging: priority prefixes and rate-limited repeats that never hide another source."""

from __future__ import annotations

import logging

from edge.log import PACED, JournalFormatter, RepeatFilter


def _record(msg: str, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord("edge.daemon", level, __file__, 1, msg, args, None)


def test_repeats_are_suppressed_per_argument_and_counted() -> None:
    f = RepeatFilter(window=60.0)
    assert f.filter(_record("sink %s: write failed: %s", "file", "disk full"))
    assert not f.filter(_record("sink %s: write failed: %s", "file", "disk full"))
    # another sink's failure is a different problem: it must show, not be swallowed
    assert f.filter(_record("sink %s: write failed: %s", "mqtt", "broker away"))
    f.window = 0.0
    again = _record("sink %s: write failed: %s", "file", "disk full")
    assert f.filter(again) and "repeated 1 more times" in str(again.msg)


def test_info_is_never_rate_limited_and_priorities_are_prefixed() -> None:
    f = RepeatFilter()
    assert all(f.filter(_record("frame %d", i, level=logging.INFO)) for i in range(3))
    fmt = JournalFormatter("%(name)s: %(message)s")
    assert fmt.format(_record("boom", level=logging.ERROR)) == "<3>edge.daemon: boom"
    assert fmt.format(_record("hello", level=logging.INFO)) == "<6>edge.daemon: hello"


def test_paced_warnings_pass_every_time() -> None:
    """A reconnect warning is logged once per back-off step (1, 2, 4 ... s) and says when the next
    attempt comes: folding those into one line a minute would hide the steps."""
    f = RepeatFilter(window=60.0)
    records = [_record("broker %s unreachable; retrying in %d s", "b:1883", 2**i, level=logging.WARNING) for i in range(4)]
    for r in records:
        r.__dict__.update(PACED)
    assert all(f.filter(r) for r in records)
    assert not any("repeated" in str(r.msg) for r in records)
