"""The spool's bounds: size and age caps over the segments, the delivery cursor they move, and what they dropped."""

from __future__ import annotations

import logging
from collections.abc import Callable

from edge.sinks.mqtt.spool import framing
from edge.sinks.mqtt.spool.cursor import Pos
from edge.sinks.mqtt.spool.segments import Segment, SegmentLog

log = logging.getLogger(__name__)


class Bounds:
    """The unacknowledged records between the cursor and the head of a SegmentLog, kept within
    `max_bytes` and `max_age_s`; every record dropped unacknowledged is counted by reason.
    The caller holds the spool's lock."""

    def __init__(self, segments: SegmentLog, max_bytes: int, max_age_s: float, clock: Callable[[], float]) -> None:
        self.segments = segments
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.clock = clock
        self.cursor = Pos(0, 0, 0)
        self.counters = {
            "appended": 0,
            "dropped_size": 0,
            "dropped_age": 0,
            "dropped_full": 0,
            "write_errors": 0,
            "bytes_appended": 0,
            "cursor_bytes": 0,
        }

    def place(self, saved: Pos) -> None:
        """At open: start from the saved cursor, moved onto what survived on disk; unlink what it passed."""
        table = self.segments.table
        self.cursor = saved
        first = next(iter(table), None)
        if first is not None and self.cursor.seg < first:
            self.cursor = Pos(first, 0, 0)
        seg = table.get(self.cursor.seg)
        if seg is not None and self.cursor.off > seg.size:  # cursor beyond a truncated tail
            self.cursor = Pos(seg.number, seg.size, seg.count)
        for number in list(table):
            if number < self.cursor.seg or table[number].size == 0:
                self.segments.unlink(number)

    def pending_in(self, seg: Segment) -> int:
        if seg.number < self.cursor.seg:
            return 0
        if seg.number == self.cursor.seg:
            return max(0, seg.count - self.cursor.idx)
        return seg.count

    def depth(self) -> int:
        return sum(self.pending_in(s) for s in self.segments.table.values())

    def normalize_cursor(self) -> None:
        """Move a cursor that points at a deleted segment to the start of the next one."""
        if self.cursor.seg not in self.segments.table:
            later = [n for n in self.segments.table if n > self.cursor.seg]
            if later:
                self.cursor = Pos(later[0], 0, 0)

    def make_room(self, need: int) -> None:
        """Drop the oldest segments until `need` more bytes fit under `max_bytes`."""
        total = self.segments.total_bytes()
        while total + need > self.max_bytes and len(self.segments.table) > 1:
            oldest = self.segments.oldest()
            if oldest is self.segments.active:
                break
            total -= oldest.size
            self.drop_oldest("dropped_size")

    def drop_oldest(self, reason: str) -> bool:
        """Unlink the oldest segment (rolling first if it is the active one); count its unacked records."""
        oldest = self.segments.oldest()
        if oldest is self.segments.active and not self.segments.roll():
            return False
        lost = self.pending_in(oldest)
        self.segments.unlink(oldest.number)
        if self.cursor.seg <= oldest.number:
            self.cursor = Pos(oldest.number + 1, 0, 0)
            self.normalize_cursor()
        if lost:
            self.counters[reason] += lost
            why = "the disk is full" if reason == "dropped_full" else "sinks.mqtt.spool.max_bytes reached"
            log.warning("spool %s: %s; dropped the %d oldest unsent records", self.segments.directory, why, lost)
        return True

    def unlink_delivered(self) -> None:
        for number in [n for n in self.segments.table if n < self.cursor.seg and self.segments.table[n] is not self.segments.active]:
            self.segments.unlink(number)

    def expire(self) -> None:
        """Skip the cursor past records older than `max_age_s`: whole segments first, then record by record."""
        if self.max_age_s <= 0:
            return
        cutoff = self.clock() - self.max_age_s
        for old in list(self.segments.table.values()):
            if old.number < self.cursor.seg or old is self.segments.active:
                continue
            if old.newest and old.newest < cutoff:
                self.counters["dropped_age"] += self.pending_in(old)
                self.cursor = Pos(old.number + 1, 0, 0)
                self.normalize_cursor()
        self.normalize_cursor()
        while self._expire_step(cutoff):
            pass

    def _expire_step(self, cutoff: float) -> bool:
        """Skip the expired records at the cursor within its segment; True while there may be more."""
        seg = self.segments.table.get(self.cursor.seg)
        if seg is None:
            return False
        base = self.cursor
        if base.off >= seg.size:
            if seg is self.segments.active:
                return False
            self.cursor = Pos(seg.number + 1, 0, 0)
            self.normalize_cursor()
            return True
        # Appends wait for this lock: look at the record at the cursor first (its header holds
        # stored_at) and read a whole chunk only when there is something to drop.
        stamp = framing.stored_at(self.segments.pread(seg.number, framing.HEADER.size, base.off))
        if stamp is None or stamp >= cutoff:
            return False
        data = self.segments.pread(seg.number, min(framing.READ_CHUNK, seg.size - base.off), base.off)
        offset = count = 0
        while (parsed := framing.parse(data, offset)) is not None and parsed[0] < cutoff:
            offset, count = parsed[2], count + 1
        if not count:
            return False
        self.cursor = Pos(seg.number, base.off + offset, base.idx + count)
        self.counters["dropped_age"] += count
        return True
