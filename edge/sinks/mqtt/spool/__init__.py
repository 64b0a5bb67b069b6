"""Durable record spool: an append-only segment log with a persisted acknowledgement cursor."""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edge.errors import SinkError
from edge.sinks.mqtt.spool import framing
from edge.sinks.mqtt.spool.bounds import Bounds
from edge.sinks.mqtt.spool.cursor import CursorFile, Pos
from edge.sinks.mqtt.spool.segments import SegmentLog, segment_bytes
from edge.stats import SpoolCounters

# Why a segment log and not SQLite (WAL), for an SD card and for crash safety:
#
# * Wear. Each record is appended once, sequentially, to the current segment file; acknowledged
#   data is never rewritten, whole segments are unlinked once the cursor has passed them. The only
#   in-place write is a 48-byte cursor record. The kernel coalesces appends into full pages, so the
#   bytes reaching the card are ~1.05x the record bytes (measured by `run_publish_benchmark`). SQLite
#   rewrites whole 4 KiB b-tree pages (plus WAL frames, plus checkpoint copies) for every commit,
#   both for the insert and again for the delete after the broker's acknowledgement: ≥ 8 KiB per
#   record when committing per record, and still ~3x the data when committing in batches.
# * kill -9. `append` is one `write(2)` into the page cache before it returns, so a record that
#   `append` accepted survives the process being killed at any moment, without any fsync and
#   without batching in memory. A batched SQLite commit (every N ms) would lose the last batch.
# * Power cut. Data reaches the card when the kernel writes it back (≤ 30 s by default) or when
#   `flush` fdatasyncs, at most every `sync_interval_s`: a power cut loses at most the records
#   appended in the last `sync_interval_s` that the broker had not yet acknowledged (when the broker
#   is up that is ~nothing: records are acknowledged within milliseconds). Every record carries a
#   CRC32; at open a torn or zero-filled tail is truncated at the first bad record. The cursor is
#   written alternately to two CRC-checked slots, so a torn cursor write falls back to the previous
#   one: records are then replayed twice, never lost (consumers dedupe by `seq`).
# * Bounds. The spool is capped by size (the oldest segment is dropped: segments are 1/16 of
#   `max_bytes`, so drop-oldest works in steps of ≤ 1/16 of the spool) and by age (records older
#   than `max_age_s` are skipped at the cursor); a full disk (ENOSPC) drops the oldest segment and
#   retries once. Every record dropped unacknowledged is counted by reason.
#
# Modules: framing.py (the record format, CRC, torn tails), segments.py (the segment files),
# bounds.py (size and age caps, drop-oldest, the in-memory cursor and drop counters), cursor.py (the
# two-slot persisted cursor). Threading: `append` is called by the pipeline thread, everything else
# by one consumer thread. A short lock guards the segment table; file reads and fsyncs happen outside it.

log = logging.getLogger(__name__)

__all__ = ["Item", "Pos", "Spool"]


@dataclass(frozen=True)
class Item:
    pos: Pos
    next: Pos
    stored_at: float
    payload: bytes


class Spool:
    """Records in, in order, until `ack` passes them; survives kill -9 and restarts."""

    def __init__(
        self,
        directory: Path,
        max_bytes: int,
        max_age_s: float = 0.0,
        sync_interval_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = Path(directory)
        self.sync_interval_s = sync_interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._segments = SegmentLog(self.directory, max_bytes)
        self._bounds = Bounds(self._segments, max_bytes, max_age_s, clock)
        self._cursor_file = CursorFile(self.directory)
        self._saved_cursor: Pos | None = None
        self._last_sync = time.monotonic()
        self.counters = self._bounds.counters

    @property
    def max_bytes(self) -> int:
        return self._bounds.max_bytes

    @property
    def max_age_s(self) -> float:
        return self._bounds.max_age_s

    # --- lifecycle -------------------------------------------------------------------------

    def open(self) -> None:
        try:
            self._open()
        except OSError as exc:
            self._release()
            where = f" ({exc.filename})" if exc.filename else ""
            raise SinkError(
                f"{self.directory}: cannot open the MQTT spool: {exc.strerror or exc}{where}; "
                "check that sinks.mqtt.spool.path is a directory this user may write"
            ) from exc
        except BaseException:
            self._release()
            raise
        pending = self.depth()
        if pending:
            log.info("spool %s: %d records from an earlier run wait for the broker", self.directory, pending)

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._cursor_file.open()
        disk = os.statvfs(self.directory)
        # Segments are 1/16 of the cap or of the filesystem, whichever is smaller, so a full disk
        # also drops in small steps.
        self._segments.segment_bytes = segment_bytes(min(self.max_bytes, disk.f_blocks * disk.f_frsize))
        self._segments.load()
        self._bounds.place(self._cursor_file.load())
        # A fresh segment per run: appends never follow a tail that a crash may have torn.
        cursor = self._bounds.cursor
        last = max(self._segments.table, default=cursor.seg)
        self._segments.create(max(last + 1, cursor.seg + 1))
        self._bounds.normalize_cursor()
        self._saved_cursor = self._bounds.cursor

    def _release(self) -> None:
        """Close every descriptor (which also drops the directory lock)."""
        with self._lock:
            self._segments.close()
            self._cursor_file.close()

    def close(self) -> None:
        self.flush(sync=True)
        self._release()

    # --- producer side ---------------------------------------------------------------------

    def append(self, payload: bytes) -> bool:
        """Store one record; False if it had to be dropped (counted). Never raises."""
        now = self._clock()
        frame = framing.frame(payload, now)
        segments, counters = self._segments, self.counters
        with self._lock:
            if segments.fd < 0 or segments.active is None:
                counters["write_errors"] += 1
                return False
            self._bounds.make_room(len(frame))
            if segments.active.size + len(frame) > segments.segment_bytes and segments.active.count:
                segments.roll()
            for attempt in (1, 2):
                try:
                    segments.write(frame, now)
                except OSError as exc:
                    full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
                    if full and attempt == 1 and self._bounds.drop_oldest("dropped_full"):
                        continue
                    counters["dropped_full" if full else "write_errors"] += 1
                    log.warning("spool %s: cannot store a record (%s); it is dropped, the pipeline continues", self.directory, exc.strerror)
                    return False
                break
            counters["bytes_appended"] += len(frame)
            counters["appended"] += 1
            return True

    # --- consumer side ---------------------------------------------------------------------

    @property
    def cursor(self) -> Pos:
        return self._bounds.cursor

    def read(self, start: Pos, limit: int) -> list[Item]:
        """Up to `limit` records from `start` (or from the cursor, if that is further on)."""
        with self._lock:
            start = max(start, self._bounds.cursor)
            segments = [(s.number, s.size) for s in self._segments.table.values() if s.number >= start.seg]
        self._segments.forget_readers({number for number, _ in segments})
        items: list[Item] = []
        pos = start
        for number, size in segments:
            if number != pos.seg:
                pos = Pos(number, 0, 0)
            pos = self._read_segment(pos, size, limit, items)
            if len(items) >= limit:
                break
        return items

    def _read_segment(self, pos: Pos, size: int, limit: int, items: list[Item]) -> Pos:
        """Append the records of one segment from `pos` to `items`, up to `limit`; the position reached."""
        number = pos.seg
        while pos.off < size and len(items) < limit:
            base = pos.off
            data = self._segments.pread(number, min(size - base, framing.READ_CHUNK), base)
            start_count = len(items)
            offset = 0
            while len(items) < limit:
                parsed = framing.parse(data, offset)
                if parsed is None:
                    break
                stored_at, payload, end = parsed
                nxt = Pos(number, base + end, pos.idx + 1)
                items.append(Item(pos, nxt, stored_at, payload))
                pos, offset = nxt, end
            if len(items) == start_count:  # unreadable (segment dropped meanwhile): skip it
                break
        return pos

    def ack(self, upto: Pos) -> None:
        """Every record before `upto` was delivered (kept in memory until `flush`)."""
        with self._lock:
            if upto > self._bounds.cursor:
                self._bounds.cursor = upto

    def flush(self, sync: bool = False) -> None:
        """Expire old records, persist the cursor, unlink delivered segments; fdatasync every
        `sync_interval_s` (or now, with `sync`)."""
        with self._lock:
            if self._cursor_file.fd < 0:
                return
            self._bounds.expire()
            self._bounds.unlink_delivered()
            cursor = self._bounds.cursor
            if cursor != self._saved_cursor and self._cursor_file.save(cursor):
                self._saved_cursor = cursor
                self.counters["cursor_bytes"] = self._cursor_file.bytes_written
            due = sync or (self.sync_interval_s > 0 and time.monotonic() - self._last_sync >= self.sync_interval_s)
            to_sync = [self._segments.fd, self._cursor_file.fd] if due else []
            unsynced = self._segments.take_unsynced()
        for fd in unsynced:
            _fdatasync(fd)
            os.close(fd)
        if due:
            for fd in to_sync:
                _fdatasync(fd)
            self._last_sync = time.monotonic()

    # --- bookkeeping -----------------------------------------------------------------------

    def depth(self) -> int:
        """Records stored and not yet acknowledged."""
        with self._lock:
            return self._bounds.depth()

    def stats(self) -> SpoolCounters:
        with self._lock:
            return SpoolCounters(self._bounds.depth(), self._segments.total_bytes(), **self.counters)


def _fdatasync(fd: int) -> None:
    try:
        os.fdatasync(fd)
    except OSError:
        pass  # the data is in the page cache either way
