"""The spool's segment files: the table of numbered append-only files, appends, rolling and unlinking."""

from __future__ import annotations

import errno
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from edge.sinks.mqtt.spool import framing

log = logging.getLogger(__name__)

_SUFFIX = ".seg"


def segment_bytes(capacity: int) -> int:
    """Segments are 1/16 of the capacity (within 16 KiB..4 MiB), so dropping the oldest one frees a small step."""
    return max(16 * 1024, min(4 << 20, capacity // 16))


@dataclass
class Segment:
    number: int
    size: int = 0
    count: int = 0
    newest: float = 0.0  # stored_at of its last record (age-based dropping)


class SegmentLog:
    """The segment files of one spool directory; the caller holds the spool's lock, except for `pread`."""

    def __init__(self, directory: Path, capacity: int) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes(capacity)
        self.table: dict[int, Segment] = {}  # in number order
        self.active: Segment | None = None
        self.fd = -1  # the active segment, O_APPEND
        self.unsynced: dict[int, int] = {}  # rolled segments' fds still to fdatasync and close
        self.read_fds: dict[int, int] = {}  # consumer thread only

    def path(self, number: int) -> Path:
        return self.directory / f"{number:012d}{_SUFFIX}"

    def load(self) -> None:
        """Scan the segments an earlier run left, cutting torn tails off."""
        self.table.clear()
        numbers = sorted(int(p.stem) for p in self.directory.glob(f"*{_SUFFIX}") if p.stem.isdigit())
        for number in numbers:
            count, newest, size = framing.scan(self.path(number))
            self.table[number] = Segment(number, size, count, newest)

    def oldest(self) -> Segment:
        return self.table[next(iter(self.table))]

    def total_bytes(self) -> int:
        return sum(s.size for s in self.table.values())

    def create(self, number: int) -> None:
        fd = os.open(self.path(number), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC, 0o600)
        self.fd = fd
        self.active = self.table[number] = Segment(number)

    def roll(self) -> bool:
        """Start the next segment; the old one's descriptor waits in `unsynced` for the next flush."""
        assert self.active is not None
        old_fd, number = self.fd, self.active.number
        try:
            self.create(number + 1)
        except OSError as exc:
            log.warning("spool %s: cannot start a new segment (%s)", self.directory, exc.strerror)
            return False
        self.unsynced[number] = old_fd
        return True

    def write(self, frame: bytes, stored_at: float) -> None:
        """Append one frame to the active segment in one write(2), or raise OSError having written nothing."""
        assert self.active is not None
        try:
            written = os.write(self.fd, frame)
            if written != len(frame):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError:
            # Cut a partial frame off so the next record starts on a frame boundary.
            try:
                os.ftruncate(self.fd, self.active.size)
            except OSError:
                pass
            raise
        self.active.size += len(frame)
        self.active.count += 1
        self.active.newest = stored_at

    def unlink(self, number: int) -> None:
        seg = self.table.pop(number)
        fd = self.unsynced.pop(number, None)
        if fd is not None:  # an open descriptor would keep the blocks of the unlinked file in use
            os.close(fd)
        if seg is self.active:
            self.active = None
        try:
            self.path(number).unlink()
        except FileNotFoundError:
            pass

    def take_unsynced(self) -> list[int]:
        """The rolled segments' descriptors, for the caller to fdatasync and close outside the lock."""
        fds, self.unsynced = list(self.unsynced.values()), {}
        return fds

    def pread(self, number: int, length: int, offset: int) -> bytes:
        """Bytes of a segment (consumer thread only); empty if the segment was unlinked meanwhile."""
        fd = self.read_fds.get(number)
        if fd is None:
            try:
                fd = self.read_fds[number] = os.open(self.path(number), os.O_RDONLY)
            except FileNotFoundError:
                return b""
        return os.pread(fd, length, offset)

    def forget_readers(self, live: set[int]) -> None:
        """Close the read descriptors of segments no longer in the table."""
        for number in [n for n in self.read_fds if n not in live]:
            os.close(self.read_fds.pop(number))

    def close(self) -> None:
        for fd in [self.fd, *self.read_fds.values(), *self.unsynced.values()]:
            if fd >= 0:
                os.close(fd)
        self.fd = -1
        self.active = None
        self.read_fds.clear()
        self.unsynced.clear()
