"""Durable record spool: an append-only segment log with a persisted acknowledgement cursor."""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import struct
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from edge.errors import SinkError

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
# Threading: `append` is called by the pipeline thread, everything else by one consumer thread.
# A short lock guards the segment table; file reads and fsyncs happen outside it.

log = logging.getLogger(__name__)

# Record frame: payload length, CRC32 of (stored_at + payload), stored_at (epoch seconds).
_HEADER = struct.Struct("<IId")
# Cursor slot: write counter, segment, offset, index in segment; then a CRC32 of those.
_CURSOR = struct.Struct("<QQQQ")
_CURSOR_SLOT = 48
_SUFFIX = ".seg"
_MAX_PAYLOAD = 1 << 24  # a length above this in a header means a corrupt frame
_READ_CHUNK = 256 * 1024


class Pos(NamedTuple):
    """A record's place: segment number, byte offset, index of the record in its segment."""

    seg: int
    off: int
    idx: int


@dataclass(frozen=True)
class Item:
    pos: Pos
    next: Pos
    stored_at: float
    payload: bytes


@dataclass
class _Segment:
    number: int
    size: int = 0
    count: int = 0
    newest: float = 0.0  # stored_at of its last record (age-based dropping)


def _segment_bytes(capacity: int) -> int:
    return max(16 * 1024, min(4 << 20, capacity // 16))


def _frame(payload: bytes, stored_at: float) -> bytes:
    stamp = struct.pack("<d", stored_at)
    return _HEADER.pack(len(payload), zlib.crc32(payload, zlib.crc32(stamp)), stored_at) + payload


def _parse(data: bytes, start: int) -> tuple[float, bytes, int] | None:
    """The record at `start` in `data` as (stored_at, payload, end), or None if torn or corrupt."""
    if start + _HEADER.size > len(data):
        return None
    length, crc, stored_at = _HEADER.unpack_from(data, start)
    end = start + _HEADER.size + length
    if length > _MAX_PAYLOAD or end > len(data):
        return None
    payload = data[start + _HEADER.size : end]
    if zlib.crc32(payload, zlib.crc32(struct.pack("<d", stored_at))) != crc:
        return None
    return stored_at, payload, end


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
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.sync_interval_s = sync_interval_s
        self.segment_bytes = _segment_bytes(max_bytes)
        self._clock = clock
        self._lock = threading.Lock()
        self._segments: dict[int, _Segment] = {}  # in number order
        self._active: _Segment | None = None
        self._fd = -1  # the active segment, O_APPEND
        self._cursor_fd = -1
        self._cursor = Pos(0, 0, 0)
        self._saved_cursor: Pos | None = None
        self._cursor_writes = 0
        self._unsynced: dict[int, int] = {}  # rolled segments' fds still to fdatasync and close
        self._read_fds: dict[int, int] = {}  # consumer thread only
        self._last_sync = time.monotonic()
        self.counters = {
            "appended": 0,
            "dropped_size": 0,
            "dropped_age": 0,
            "dropped_full": 0,
            "write_errors": 0,
            "bytes_appended": 0,
            "cursor_bytes": 0,
        }

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
        self._cursor_fd = os.open(self.directory / "cursor", os.O_RDWR | os.O_CREAT, 0o600)
        # Two spools on one directory would each truncate and unlink the other's segments: the
        # lock (on the cursor's open file, so also between sinks of one process) keeps them apart.
        # The kernel drops it when the descriptor closes, so a kill -9 never leaves it stale.
        try:
            fcntl.flock(self._cursor_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SinkError(
                f"{self.directory}: spool in use by another process or sink; "
                "stop the other mnv1-edge or give each MQTT sink its own sinks.mqtt.spool.path"
            ) from None
        disk = os.statvfs(self.directory)
        # Segments are 1/16 of the cap or of the filesystem, whichever is smaller, so a full disk
        # also drops in small steps.
        self.segment_bytes = _segment_bytes(min(self.max_bytes, disk.f_blocks * disk.f_frsize))
        self._segments.clear()
        numbers = sorted(int(p.stem) for p in self.directory.glob(f"*{_SUFFIX}") if p.stem.isdigit())
        for number in numbers:
            self._segments[number] = self._scan(number)
        self._cursor = self._load_cursor()
        first = next(iter(self._segments), None)
        if first is not None and self._cursor.seg < first:
            self._cursor = Pos(first, 0, 0)
        seg = self._segments.get(self._cursor.seg)
        if seg is not None and self._cursor.off > seg.size:  # cursor beyond a truncated tail
            self._cursor = Pos(seg.number, seg.size, seg.count)
        for number in list(self._segments):
            if number < self._cursor.seg or self._segments[number].size == 0:
                self._unlink(number)
        # A fresh segment per run: appends never follow a tail that a crash may have torn.
        last = max(self._segments, default=self._cursor.seg)
        self._create_segment(max(last + 1, self._cursor.seg + 1))
        self._normalize_cursor()
        self._saved_cursor = self._cursor

    def _release(self) -> None:
        """Close every descriptor (which also drops the directory lock)."""
        with self._lock:
            for fd in [self._fd, self._cursor_fd, *self._read_fds.values(), *self._unsynced.values()]:
                if fd >= 0:
                    os.close(fd)
            self._fd = self._cursor_fd = -1
            self._active = None
            self._read_fds.clear()
            self._unsynced.clear()

    def close(self) -> None:
        self.flush(sync=True)
        self._release()

    # --- producer side ---------------------------------------------------------------------

    def append(self, payload: bytes) -> bool:
        """Store one record; False if it had to be dropped (counted). Never raises."""
        now = self._clock()
        frame = _frame(payload, now)
        with self._lock:
            if self._fd < 0 or self._active is None:
                self.counters["write_errors"] += 1
                return False
            self._make_room(len(frame))
            if self._active.size + len(frame) > self.segment_bytes and self._active.count:
                self._roll()
            for attempt in (1, 2):
                try:
                    self._write(frame)
                except OSError as exc:
                    full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
                    if full and attempt == 1 and self._drop_oldest("dropped_full"):
                        continue
                    self.counters["dropped_full" if full else "write_errors"] += 1
                    log.warning("spool %s: cannot store a record (%s); it is dropped, the pipeline continues", self.directory, exc.strerror)
                    return False
                break
            self._active.count += 1
            self._active.newest = now
            self.counters["appended"] += 1
            return True

    def _write(self, frame: bytes) -> None:
        assert self._active is not None
        try:
            written = os.write(self._fd, frame)
            if written != len(frame):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError:
            # Cut a partial frame off so the next record starts on a frame boundary.
            try:
                os.ftruncate(self._fd, self._active.size)
            except OSError:
                pass
            raise
        self._active.size += len(frame)
        self.counters["bytes_appended"] += len(frame)

    def _make_room(self, need: int) -> None:
        total = sum(s.size for s in self._segments.values())
        while total + need > self.max_bytes and len(self._segments) > 1:
            oldest = self._segments[next(iter(self._segments))]
            if oldest is self._active:
                break
            total -= oldest.size
            self._drop_oldest("dropped_size")

    def _drop_oldest(self, reason: str) -> bool:
        """Unlink the oldest segment (rolling first if it is the active one); count its unacked records."""
        oldest = self._segments[next(iter(self._segments))]
        if oldest is self._active and not self._roll():
            return False
        lost = self._pending_in(oldest)
        self._unlink(oldest.number)
        if self._cursor.seg <= oldest.number:
            self._cursor = Pos(oldest.number + 1, 0, 0)
            self._normalize_cursor()
        if lost:
            self.counters[reason] += lost
            why = "the disk is full" if reason == "dropped_full" else "sinks.mqtt.spool.max_bytes reached"
            log.warning("spool %s: %s; dropped the %d oldest unsent records", self.directory, why, lost)
        return True

    def _roll(self) -> bool:
        assert self._active is not None
        old_fd = self._fd
        if not self._start_segment(self._active.number + 1):
            return False
        self._unsynced[self._active.number - 1] = old_fd
        return True

    def _start_segment(self, number: int) -> bool:
        try:
            self._create_segment(number)
        except OSError as exc:
            log.warning("spool %s: cannot start a new segment (%s)", self.directory, exc.strerror)
            return False
        return True

    def _create_segment(self, number: int) -> None:
        path = self.directory / f"{number:012d}{_SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC, 0o600)
        self._fd = fd
        self._active = self._segments[number] = _Segment(number)

    # --- consumer side ---------------------------------------------------------------------

    @property
    def cursor(self) -> Pos:
        return self._cursor

    def read(self, start: Pos, limit: int) -> list[Item]:
        """Up to `limit` records from `start` (or from the cursor, if that is further on)."""
        with self._lock:
            start = max(start, self._cursor)
            segments = [(s.number, s.size) for s in self._segments.values() if s.number >= start.seg]
        live = {number for number, _ in segments}
        for number in [n for n in self._read_fds if n not in live]:
            os.close(self._read_fds.pop(number))
        items: list[Item] = []
        pos = start
        for number, size in segments:
            if number != pos.seg:
                pos = Pos(number, 0, 0)
            while pos.off < size and len(items) < limit:
                base = pos.off
                data = self._pread(number, min(size - base, _READ_CHUNK), base)
                start_count = len(items)
                offset = 0
                while len(items) < limit:
                    parsed = _parse(data, offset)
                    if parsed is None:
                        break
                    stored_at, payload, end = parsed
                    nxt = Pos(number, base + end, pos.idx + 1)
                    items.append(Item(pos, nxt, stored_at, payload))
                    pos, offset = nxt, end
                if len(items) == start_count:  # unreadable (segment dropped meanwhile): skip it
                    break
            if len(items) >= limit:
                break
        return items

    def _pread(self, number: int, length: int, offset: int) -> bytes:
        fd = self._read_fds.get(number)
        if fd is None:
            try:
                fd = self._read_fds[number] = os.open(self.directory / f"{number:012d}{_SUFFIX}", os.O_RDONLY)
            except FileNotFoundError:
                return b""
        return os.pread(fd, length, offset)

    def ack(self, upto: Pos) -> None:
        """Every record before `upto` was delivered (kept in memory until `flush`)."""
        with self._lock:
            if upto > self._cursor:
                self._cursor = upto

    def flush(self, sync: bool = False) -> None:
        """Expire old records, persist the cursor, unlink delivered segments; fdatasync every
        `sync_interval_s` (or now, with `sync`)."""
        with self._lock:
            if self._cursor_fd < 0:
                return
            self._expire()
            for number in [n for n in self._segments if n < self._cursor.seg and self._segments[n] is not self._active]:
                self._unlink(number)
            if self._cursor != self._saved_cursor:
                self._write_cursor()
            due = sync or (self.sync_interval_s > 0 and time.monotonic() - self._last_sync >= self.sync_interval_s)
            to_sync = [self._fd, self._cursor_fd] if due else []
            unsynced, self._unsynced = list(self._unsynced.values()), {}
        for fd in unsynced:
            try:
                os.fdatasync(fd)
            except OSError:
                pass  # the data is in the page cache either way
            os.close(fd)
        if due:
            for fd in to_sync:
                try:
                    os.fdatasync(fd)
                except OSError:
                    pass
            self._last_sync = time.monotonic()

    def _expire(self) -> None:
        if self.max_age_s <= 0:
            return
        cutoff = self._clock() - self.max_age_s
        for old in list(self._segments.values()):
            if old.number < self._cursor.seg or old is self._active:
                continue
            if old.newest and old.newest < cutoff:
                self.counters["dropped_age"] += self._pending_in(old)
                self._cursor = Pos(old.number + 1, 0, 0)
                self._normalize_cursor()
        # From the cursor on, walk record by record (records are in time order).
        self._normalize_cursor()
        while (seg := self._segments.get(self._cursor.seg)) is not None:
            base = self._cursor
            if base.off >= seg.size:
                if seg is self._active:
                    return
                self._cursor = Pos(seg.number + 1, 0, 0)
                self._normalize_cursor()
                continue
            # Appends wait for this lock: look at the record at the cursor first (its header holds
            # stored_at) and read a whole chunk only when there is something to drop.
            head = self._pread(seg.number, _HEADER.size, base.off)
            if len(head) < _HEADER.size or _HEADER.unpack(head)[2] >= cutoff:
                return
            data = self._pread(seg.number, min(_READ_CHUNK, seg.size - base.off), base.off)
            offset = count = 0
            while (parsed := _parse(data, offset)) is not None and parsed[0] < cutoff:
                offset, count = parsed[2], count + 1
            if not count:
                return
            self._cursor = Pos(seg.number, base.off + offset, base.idx + count)
            self.counters["dropped_age"] += count

    # --- bookkeeping -----------------------------------------------------------------------

    def _pending_in(self, seg: _Segment) -> int:
        if seg.number < self._cursor.seg:
            return 0
        if seg.number == self._cursor.seg:
            return max(0, seg.count - self._cursor.idx)
        return seg.count

    def depth(self) -> int:
        """Records stored and not yet acknowledged."""
        with self._lock:
            return sum(self._pending_in(s) for s in self._segments.values())

    def stats(self) -> dict[str, int]:
        with self._lock:
            depth = sum(self._pending_in(s) for s in self._segments.values())
            size = sum(s.size for s in self._segments.values())
            counters = dict(self.counters)
        dropped = counters["dropped_size"] + counters["dropped_age"] + counters["dropped_full"]
        return {"spool_depth": depth, "spool_bytes": size, "spool_dropped": dropped, **{f"spool_{k}": v for k, v in counters.items()}}

    def _normalize_cursor(self) -> None:
        """Move a cursor that points at a deleted segment to the start of the next one."""
        if self._cursor.seg not in self._segments:
            later = [n for n in self._segments if n > self._cursor.seg]
            if later:
                self._cursor = Pos(later[0], 0, 0)

    def _unlink(self, number: int) -> None:
        seg = self._segments.pop(number)
        fd = self._unsynced.pop(number, None)
        if fd is not None:  # an open descriptor would keep the blocks of the unlinked file in use
            os.close(fd)
        if seg is self._active:
            self._active = None
        try:
            (self.directory / f"{number:012d}{_SUFFIX}").unlink()
        except FileNotFoundError:
            pass

    def _scan(self, number: int) -> _Segment:
        """Count a segment's records, truncating it at the first torn or corrupt frame."""
        path = self.directory / f"{number:012d}{_SUFFIX}"
        data = path.read_bytes()
        seg = _Segment(number)
        offset = 0
        while (parsed := _parse(data, offset)) is not None:
            seg.newest, _, offset = parsed[0], parsed[1], parsed[2]
            seg.count += 1
        seg.size = offset
        if offset < len(data):
            log.warning("spool %s: dropped a torn tail of %d bytes (a crash or power cut during a write)", path, len(data) - offset)
            os.truncate(path, offset)
        return seg

    def _load_cursor(self) -> Pos:
        data = os.pread(self._cursor_fd, 2 * _CURSOR_SLOT, 0)
        best: tuple[int, Pos] | None = None
        for slot in (0, 1):
            raw = data[slot * _CURSOR_SLOT : slot * _CURSOR_SLOT + _CURSOR.size + 4]
            if len(raw) < _CURSOR.size + 4:
                continue
            (crc,) = struct.unpack_from("<I", raw, _CURSOR.size)
            if zlib.crc32(raw[: _CURSOR.size]) != crc:
                continue
            counter, seg, off, idx = _CURSOR.unpack_from(raw)
            if best is None or counter > best[0]:
                best = (counter, Pos(seg, off, idx))
        if best is None:
            return Pos(0, 0, 0)
        self._cursor_writes = best[0]
        return best[1]

    def _write_cursor(self) -> None:
        self._cursor_writes += 1
        body = _CURSOR.pack(self._cursor_writes, *self._cursor)
        record = body + struct.pack("<I", zlib.crc32(body))
        try:
            os.pwrite(self._cursor_fd, record, (self._cursor_writes % 2) * _CURSOR_SLOT)
        except OSError as exc:
            log.warning("spool %s: cannot save the delivery cursor (%s); records may be sent twice after a restart", self.directory, exc.strerror)
            return
        self.counters["cursor_bytes"] += len(record)
        self._saved_cursor = self._cursor
