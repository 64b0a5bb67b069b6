"""File sink: JSON Lines, one os.write per record on an O_APPEND fd, size rotation, fsync policy."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from edge.errors import SinkError
from edge.fsutil import explain_mkdir, fsync_dir
from edge.stats import SinkCounters

if TYPE_CHECKING:
    from edge.config import FileSinkConfig
    from edge.record import Record
    from edge.stats import StatsReport

# Why this survives kill -9 without torn or duplicated lines: each record is written by a single
# write(2) of a complete line, which the kernel finishes even if the process is killed right after;
# a crash of the machine (or a full disk) can still leave a partial last line, which `open` cuts off.

log = logging.getLogger("edge.sinks.file")

TAIL = 1 << 16  # bytes read back from the end when checking the last lines


def repair(path: Path) -> int:
    """Cut a torn or unparsable tail (a partial line, NULs after a power loss) back to the last
    good line. Returns the number of bytes removed."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0
    if size == 0:
        return 0
    with open(path, "rb") as f:
        start = max(0, size - TAIL)
        f.seek(start)
        tail = f.read()
    # Drop the part after the last newline, then any trailing complete lines that do not parse.
    keep = tail.rfind(b"\n") + 1
    if keep == 0 and start > 0:
        return 0  # one line longer than the window: not a record of ours, leave it
    while keep > 0:
        prev = tail.rfind(b"\n", 0, keep - 1) + 1
        if prev == 0 and start > 0:
            break  # the line starts before the window: a 64 KiB record is not ours to judge
        try:
            json.loads(tail[prev : keep - 1])
            break
        except ValueError:
            keep = prev
    new_size = start + keep
    if new_size == size:
        return 0
    with open(path, "r+b") as f:
        f.truncate(new_size)
        os.fsync(f.fileno())
    return size - new_size


class FileSink:
    """Appends records to a JSON Lines file; rotates to FILE.1 … FILE.keep by size."""

    name = "file"

    def __init__(self, config: FileSinkConfig) -> None:
        self.config = config
        self.path = Path(config.path)
        self._fd = -1
        self._size = 0
        self._last_sync = time.monotonic()
        self._dirty = False
        self._written = 0
        self._write_errors = 0  # failed writes: each one a record lost (there is no retry)
        self._fsync_errors = 0
        self._lost_since = 0  # records lost in the current failure streak
        self._rotations = 0
        self._rotate_errors = 0
        self._rotate_failing = False
        self._repaired = 0

    def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SinkError(f"sinks.file.path: cannot create the folder of {self.path} ({explain_mkdir(self.path.parent, exc)})") from exc
        try:
            self._open_fd()  # and lock it first: the repair below must not cut another writer's line
            self._repaired = repair(self.path)
            self._size = os.fstat(self._fd).st_size
        except OSError as exc:
            raise SinkError(f"sinks.file.path: cannot open {self.path} for appending ({exc.strerror or exc})") from exc
        if self._repaired:
            log.warning("%s: cut a torn last line of %d bytes left by a crash", self.path, self._repaired)

    def _open_fd(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        # Two daemons (two configs, two state_dirs) appending to one file would interleave two seq
        # series that consumers cannot tell apart: the file is flock'ed while open (readers do not lock).
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SinkError(f"sinks.file.path: {self.path} is being written by another mnv1-edge; give each daemon its own file") from None
        self._fd = fd
        self._size = os.fstat(fd).st_size

    def write(self, record: Record) -> None:
        line = (record.to_json() + "\n").encode()
        try:
            if self.config.max_bytes and self._size and self._size + len(line) > self.config.max_bytes:
                self._try_rotate()
            if self._fd >= 0 and os.fstat(self._fd).st_nlink == 0:
                self._reopen_deleted()
            if self._fd < 0:  # a failed reopen (after a rotation): try again rather than fail forever
                self._open_fd()
            n = os.write(self._fd, line)
            if n != len(line):
                raise OSError(f"short write ({n} of {len(line)} bytes)")
        except OSError as exc:
            self._write_errors += 1
            self._lost_since += 1
            log.warning("%s: write failed (%s); record %d lost (counted as records_lost in stats)", self.path, exc.strerror or exc, record.seq)
            self._undo_partial()
            return
        if self._lost_since:
            log.warning("%s: writes work again; %d records were lost meanwhile", self.path, self._lost_since)
            self._lost_since = 0
        self._size += n
        self._written += 1
        self._dirty = True
        policy = self.config.fsync
        if policy == "always" or (policy == "interval" and time.monotonic() - self._last_sync >= self.config.fsync_interval_s):
            self._sync()

    def _reopen_deleted(self) -> None:
        """The file was deleted under us (someone cleaned up): appending to the unlinked inode would
        hide every record and keep its disk space in use, so start a new file at the path."""
        log.warning("%s: the file was deleted while open; starting a new one", self.path)
        os.close(self._fd)
        self._fd = -1
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._open_fd()

    def _undo_partial(self) -> None:
        # A full disk can take part of a line; cut it so the next record starts on a fresh line.
        try:
            if self._fd >= 0 and os.fstat(self._fd).st_size != self._size:
                os.ftruncate(self._fd, self._size)
        except OSError:
            pass  # nothing more to do; open() repairs the tail at the next start

    def _sync(self) -> None:
        if self._dirty and self._fd >= 0:
            try:
                os.fdatasync(self._fd)
            except OSError as exc:
                self._fsync_errors += 1
                log.warning("%s: fsync failed (%s)", self.path, exc.strerror or exc)
        self._dirty = False
        self._last_sync = time.monotonic()

    def _try_rotate(self) -> None:
        """Rotate; if that fails, keep appending to the current file and retry at the next write."""
        try:
            self._rotate()
        except OSError as exc:
            self._rotate_errors += 1
            if not self._rotate_failing:  # one line per failure streak, not one per record
                log.warning("%s: cannot rotate (%s); appending beyond sinks.file.max_bytes until rotation works", self.path, exc.strerror or exc)
            self._rotate_failing = True
            return
        if self._rotate_failing:
            log.info("%s: rotation works again", self.path)
            self._rotate_failing = False

    def _rotate(self) -> None:
        if self.config.fsync != "never":
            self._sync()
        os.close(self._fd)
        self._fd = -1
        try:
            keep = self.config.keep
            if keep == 0:
                self.path.unlink(missing_ok=True)
            else:
                Path(f"{self.path}.{keep}").unlink(missing_ok=True)
                for i in range(keep - 1, 0, -1):
                    older = Path(f"{self.path}.{i}")
                    if older.exists():
                        older.rename(f"{self.path}.{i + 1}")
                self.path.rename(f"{self.path}.1")
            if self.config.fsync != "never":
                fsync_dir(self.path.parent)
        finally:
            self._open_fd()  # whatever happened above, records go on to a file
        self._rotations += 1

    def report(self, stats: StatsReport) -> None:
        pass  # the log carries the stats; this file holds only results

    def stats(self) -> SinkCounters:
        errors = self._write_errors + self._fsync_errors
        counters = {
            "written": self._written,
            "errors": errors,  # kept for dashboards; the two below split it
            "write_errors": self._write_errors,
            "fsync_errors": self._fsync_errors,
            "records_lost": self._write_errors,
            "rotations": self._rotations,
            "rotate_errors": self._rotate_errors,
            "bytes": self._size,
        }
        return SinkCounters(counters, lost=self._write_errors, errors=errors)

    def flush(self) -> None:
        if self.config.fsync != "never":
            self._sync()

    def close(self) -> None:
        if self._fd >= 0:
            self.flush()
            os.close(self._fd)
            self._fd = -1
