"""Logging for journald and terminals: syslog priority prefixes under systemd, rate-limited repeats."""

from __future__ import annotations

import logging
import os
import sys
import time

# journald reads "<N>" at the start of a line as the syslog priority (SyslogLevelPrefix=yes),
# so `journalctl -p warning` shows only problems.
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class JournalFormatter(logging.Formatter):
    """No timestamp (journald adds its own), a priority prefix, the logger's short name."""

    def format(self, record: logging.LogRecord) -> str:
        prio = _PRIORITY.get(record.levelno, 6)
        text = super().format(record).replace("\n", " | ")
        return f"<{prio}>{text}"


# `extra=PACED` marks a warning logged once per reconnect attempt: the back-off (1, 2, 4 … s) already
# paces it, and each line says when the next attempt comes, so the repeat filter lets every one through.
PACED = {"paced": True}


class RepeatFilter(logging.Filter):
    """Lets the first occurrence of a warning/error through, then at most one per `window` seconds
    with a count of those suppressed, so a failing broker or camera cannot flood the journal.
    Records logged with `extra=PACED` are already paced by a back-off and always pass."""

    def __init__(self, window: float = 60.0) -> None:
        super().__init__()
        self.window = window
        self._seen: dict[tuple[str, str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or getattr(record, "paced", False):
            return True
        # The first argument (e.g. which sink) is part of the key, so one failing sink
        # cannot hide another's errors.
        first = record.args[0] if isinstance(record.args, tuple) and record.args else None
        key = (record.name, str(record.msg), str(first))
        now = time.monotonic()
        last, suppressed = self._seen.get(key, (-1e18, 0))
        if now - last < self.window:
            self._seen[key] = (last, suppressed + 1)
            return False
        self._seen[key] = (now, 0)
        if suppressed:
            record.msg = f"{record.msg} (repeated {suppressed} more times in the last {self.window:.0f} s)"
        return True


def under_journald() -> bool:
    return bool(os.environ.get("JOURNAL_STREAM")) or os.environ.get("MNV1_EDGE_LOG_FORMAT") == "journal"


def setup(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if under_journald():
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Python warnings (a library's DeprecationWarning, Pillow's DecompressionBombWarning) would go
    # to stderr raw: without a priority in the journal. Through the log they are warnings like ours.
    logging.captureWarnings(True)
