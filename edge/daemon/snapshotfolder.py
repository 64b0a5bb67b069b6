"""The snapshot folder: what it keeps (oldest first, within max_files and max_bytes) and whether it can take one more."""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from edge.fsutil import explain_mkdir
from edge.log import PACED
from edge.record import rfc3339

log = logging.getLogger("edge.daemon.snapshots")

# The input JPEG (128x128, at most 2 bytes a pixel at quality <= 95) and the record (top_k of up to
# 1001 classes) of one snapshot: the room a claim needs, under the smallest snapshots.max_bytes.
NEEDED_BYTES = 2 * 128 * 128 + 64 * 1024
RETRY_MAX_S = 60.0
NAME = re.compile(r"^(\d{8}T\d{9}Z-\d+)(\.jpg|-view\.jpg|\.json)$")


def stem_for(seq: int, ts: float) -> str:
    """20261129T082501123Z-42: UTC time to the millisecond, then the record's seq."""
    return re.sub(r"[-:.]", "", rfc3339(ts)) + f"-{seq}"


@dataclass
class Kept:
    """One snapshot on disk: its stem, its files' names and their total size."""

    stem: str
    names: list[str] = field(default_factory=list)
    size: int = 0


class SnapshotFolder:
    """The snapshots in `path` and their totals. The pipeline thread asks `writable` before it names
    a snapshot; the writer thread calls `make_room`, `start` and `written` as it saves one."""

    def __init__(self, path: Path, max_files: int, max_bytes: int) -> None:
        self.path = path
        self.max_files = max_files
        self.max_bytes = max_bytes
        self.files = 0
        self.bytes = 0
        self._kept: deque[Kept] = deque()
        self._opened = False
        self._lost = False  # deleted and made again (pipeline thread): what _kept lists is gone (forgotten by the writer's thread)
        self._failing = False  # the last save failed: claims wait for a probe write to succeed
        self._retry_at = 0.0  # monotonic time of the next probe while failing
        self._retry_s = 1.0

    def open(self) -> None:
        """Create the folder, check it takes a file, learn what it keeps; OSError when it cannot."""
        self.create_and_probe()  # writable? say so now, not once per snapshot
        self.scan()
        self._opened = True

    def writable(self, now: float) -> bool:
        """Whether a snapshot claimed now can be written: the folder is there (made again if it was
        deleted), has room for the input and the record, and the writer is not failing. A statvfs
        per claim (a change of the answer), a probe write only while failing."""
        if self._failing:
            if now < self._retry_at:
                return False
            try:
                self.create_and_probe()
            except OSError as exc:
                self._retry_s = min(2 * self._retry_s, RETRY_MAX_S)
                self._retry_at = now + self._retry_s
                why = explain_mkdir(self.path, exc)
                log.warning("snapshots: still cannot write in %s (%s); next try in %.0f s", self.path, why, self._retry_s, extra=PACED)
                return False
            log.warning("snapshots: %s is writable again; snapshots resume", self.path)
            self._failing = False
        try:
            st = os.statvfs(self.path)
        except FileNotFoundError:  # deleted while running: made again, as the file sink does with its file
            try:
                self.create_and_probe()
            except OSError as exc:
                self.fail(f"the folder {self.path} is gone and cannot be made again ({explain_mkdir(self.path, exc)})", now)
                return False
            return self.writable(now)
        except OSError as exc:
            self.fail(f"cannot look at {self.path} ({exc.strerror or exc})", now)
            return False
        free = st.f_bavail * st.f_frsize
        if free < NEEDED_BYTES:
            self.fail(f"{self.path} has {free} bytes free, a snapshot needs {NEEDED_BYTES}", now)
            return False
        return True

    def fail(self, why: str, now: float) -> None:
        """Stop claiming until a probe write succeeds (tried now, then once per back-off step)."""
        if not self._failing:
            log.warning("snapshots: %s; no record names a snapshot until one can be written (counted as snapshots_no_room)", why)
        self._failing = True
        self._retry_s = 1.0
        self._retry_at = now

    def create_and_probe(self) -> None:
        """Create the folder if needed (deleted while running: said, and what it held forgotten) and
        write and remove a probe file."""
        if not self.path.is_dir():
            self.path.mkdir(mode=0o750, parents=True, exist_ok=True)
            if self._opened:
                log.warning("snapshots: the folder %s was gone; made it again", self.path)
                self._lost = True
        fd, probe = tempfile.mkstemp(prefix=".probe.", dir=self.path)
        os.close(fd)
        os.unlink(probe)

    def scan(self) -> None:
        """Our snapshot files already in the folder, oldest first; temp files of a crashed write removed."""
        found: dict[str, list[tuple[float, str, int]]] = {}
        with os.scandir(self.path) as entries:
            for entry in entries:
                if is_temp(entry.name):
                    Path(entry.path).unlink(missing_ok=True)
                    continue
                match = NAME.match(entry.name)
                if match and entry.is_file(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    found.setdefault(match.group(1), []).append((st.st_mtime, entry.name, st.st_size))
        # Oldest first by modification time (not by name: a Pi without a clock may have started in 1970).
        for stem, files in sorted(found.items(), key=lambda item: (min(f[0] for f in item[1]), item[0])):
            self._kept.append(Kept(stem, [f[1] for f in files], sum(f[2] for f in files)))
            self.files += len(files)
            self.bytes += sum(f[2] for f in files)

    def make_room(self, files: int, size: int) -> int:
        """Delete the oldest snapshots until `files` more files of `size` bytes fit; how many were deleted."""
        if self._lost:
            self._lost = False
            self._forget()
        dropped = 0
        while self._kept and (self.files + files > self.max_files or self.bytes + size > self.max_bytes):
            old = self._kept.popleft()
            for file_name in old.names:
                (self.path / file_name).unlink(missing_ok=True)
            self.files -= len(old.names)
            self.bytes -= old.size
            dropped += 1
        return dropped

    def start(self, stem: str) -> Kept:
        """A new snapshot, listed before its files are written, so one that fails half-way is still deleted in its turn."""
        kept = Kept(stem)
        self._kept.append(kept)
        return kept

    def written(self, kept: Kept, name: str, size: int) -> None:
        kept.names.append(name)
        kept.size += size
        self.files += 1
        self.bytes += size

    def _forget(self) -> None:
        """The folder was deleted and made again: what it held is gone."""
        self._kept.clear()
        self.files = self.bytes = 0


def is_temp(name: str) -> bool:
    """write_atomic's temp files for our names: .<name>.<random>.tmp"""
    if not (name.startswith(".") and name.endswith(".tmp")):
        return False
    return bool(NAME.match(name[1:-4].rpartition(".")[0]))
