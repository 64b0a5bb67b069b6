"""Evidence snapshots: the frame behind an answer change as JPEGs beside its record, in a folder bounded by size and count."""

# The pipeline thread only decides (`claim`, which names the files so the published record can say
# which) and hands over the frame (`take`: a 48 KiB copy of the model's input and the source's view
# closure, frozen first when it reads a reused buffer: the Pi camera's main stream). Encoding, the
# larger view's decode and the fsync'ed writes happen in this module's own thread, so an SD card's
# slow fsync delays a snapshot, never a frame. A snapshot is 2 or 3 files
# sharing a stem, written with write_atomic (no reader sees a torn file):
#   <stem>.jpg        the model's input (128x128, after the region of interest): what the record names
#   <stem>-view.jpg   the source's whole frame, longest side <= max_side (when the source has one)
#   <stem>.json       the record, with its `snapshot` field
# Before a snapshot is written, the oldest snapshots are deleted until it fits under max_files and
# max_bytes, so the folder never holds more (a write_atomic temp file replaces its final name).

from __future__ import annotations

import io
import logging
import os
import queue
import re
import tempfile
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edge.errors import SinkError
from edge.fsutil import write_atomic
from edge.record import rfc3339

if TYPE_CHECKING:
    from PIL import Image

    from edge.config import SnapshotsConfig
    from edge.record import Record
    from edge.sources import Frame

log = logging.getLogger("edge.daemon.snapshots")

QUEUE = 4  # snapshots waiting for the writer; more are skipped (counted), never queued unbounded
WAIT_S = 30.0  # the longest a file source waits for the writer (a folder on a dead disk must not hang the daemon)
FILE_MODE = 0o640  # pictures of somebody's premises: not world-readable
_NAME = re.compile(r"^(\d{8}T\d{9}Z-\d+)(\.jpg|-view\.jpg|\.json)$")


def stem_for(seq: int, ts: float) -> str:
    """20261129T082501123Z-42: UTC time to the millisecond, then the record's seq."""
    return re.sub(r"[-:.]", "", rfc3339(ts)) + f"-{seq}"


@dataclass
class _Kept:
    """One snapshot on disk: its stem, its files' names and their total size."""

    stem: str
    names: list[str]
    size: int


@dataclass(frozen=True)
class _Job:
    record: Record
    pixels: np.ndarray
    view: Callable[[int], Image.Image] | None


class SnapshotWriter:
    """`open`, then per published record `claim` (the file name, or None) and `take`; `close` at the end."""

    def __init__(self, config: SnapshotsConfig, publish: Callable[[bytes], None] | None = None) -> None:
        """`publish` gets each saved snapshot's JPEG (the view, else the input), in the writer thread."""
        self.config = config
        self.folder = Path(config.path)
        self.publish = publish
        self.counters = {"saved": 0, "dropped": 0, "skipped": 0, "errors": 0, "view_errors": 0}
        self._kept: deque[_Kept] = deque()
        self._files = 0
        self._bytes = 0
        self._last = -1e18  # monotonic time of the last claimed snapshot
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._room = threading.Semaphore(QUEUE)  # places in the queue: taken by claim(), given back when written
        self._thread: threading.Thread | None = None
        self._failing = False

    # --- pipeline thread ---------------------------------------------------------------------

    def open(self) -> None:
        """Create the folder, remove temp files a crash left, learn what is kept, start the thread."""
        try:
            self.folder.mkdir(mode=0o750, parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".probe.", dir=self.folder)  # writable? say so now, not once per snapshot
            os.close(fd)
            os.unlink(probe)
            self._scan()
        except OSError as exc:
            raise SinkError(f"snapshots.path: cannot use {self.folder} ({exc.strerror or exc}); create it or fix its permissions") from exc
        self._make_room(0, 0)  # the limits may have shrunk since the last run
        self._thread = threading.Thread(target=self._main, name="snapshots", daemon=True)
        self._thread.start()

    def claim(self, changed: bool, seq: int, ts: float, now: float, wait: bool = False) -> str | None:
        """The file name the record at `seq`/`ts` should carry when a snapshot is due, else None.
        Due on a change of the answer, or `every_s` after the last snapshot. While the writer is
        QUEUE snapshots behind, a live source's snapshot is skipped (counted); with `wait` (a file
        source, read at the pipeline's pace) the pipeline waits for the writer instead."""
        every = self.config.every_s
        if not (changed or (every > 0 and now - self._last >= every)):
            return None
        if not (self._room.acquire(timeout=WAIT_S) if wait else self._room.acquire(blocking=False)):
            self.counters["skipped"] += 1
            return None
        self._last = now
        return stem_for(seq, ts) + ".jpg"

    def take(self, record: Record, frame: Frame) -> None:
        """Queue the claimed snapshot; only the 128x128 input is copied (the source may reuse its buffer),
        and a view on a reused buffer (the Pi camera's, edge/sources/mainview.py) is frozen now."""
        view = frame.view
        freeze = getattr(view, "freeze", None)
        if freeze is not None:
            view = freeze()
        self._jobs.put(_Job(record, frame.pixels.copy(), view))  # claim() took a place in the queue

    def stats(self) -> dict[str, int]:
        return {f"snapshots_{k}": v for k, v in self.counters.items()} | {"snapshots_files": self._files, "snapshots_bytes": self._bytes}

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued snapshot is written (or `timeout`); True when none is left."""
        with self._jobs.all_tasks_done:
            return self._jobs.all_tasks_done.wait_for(lambda: self._jobs.unfinished_tasks == 0, timeout)

    def close(self, timeout: float = 5.0) -> None:
        if self._thread is None:
            return
        if not self.flush(timeout):
            log.warning("snapshots: %d not written at stop (the writer is behind)", self._jobs.unfinished_tasks)
        self._jobs.put(None)
        self._thread.join(timeout=1.0)
        self._thread = None

    # --- writer thread ------------------------------------------------------------------------

    def _main(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                if job is None:
                    return
                self._save(job)
            except Exception as exc:  # a full disk, a removed folder: count it, keep the daemon running
                self.counters["errors"] += 1
                if not self._failing:
                    log.warning("snapshots: cannot save %s: %s (logged once; counted as snapshots_errors)", job and job.record.snapshot, exc)
                self._failing = True
            else:
                self._failing = False
            finally:
                if job is not None:
                    self._room.release()
                self._jobs.task_done()

    def _save(self, job: _Job) -> None:
        name = job.record.snapshot
        assert name is not None
        stem = name.removesuffix(".jpg")
        files: list[tuple[str, bytes]] = []
        if job.view is not None:
            try:
                files.append((stem + "-view.jpg", self._jpeg(job.view(self.config.max_side))))
            except Exception as exc:  # the image file went away, a frame that will not convert
                self.counters["view_errors"] += 1
                log.debug("snapshots: no view for %s: %s", stem, exc)
        files.append((stem + ".json", (job.record.to_json() + "\n").encode()))
        from PIL import Image

        files.append((name, self._jpeg(Image.fromarray(job.pixels))))  # last: the named file means a whole snapshot
        size = sum(len(data) for _, data in files)
        if size > self.config.max_bytes or len(files) > self.config.max_files:
            raise SinkError(f"{size} bytes in {len(files)} files do not fit snapshots.max_bytes / max_files")
        self._make_room(len(files), size)
        kept = _Kept(stem, [], 0)
        self._kept.append(kept)  # before the writes, so a failure half-way is still dropped in its turn
        for file_name, data in files:
            write_atomic(self.folder / file_name, data, FILE_MODE)
            kept.names.append(file_name)
            kept.size += len(data)
            self._files += 1
            self._bytes += len(data)
        self.counters["saved"] += 1
        if self.publish is not None:
            self.publish(files[0][1])  # the view when there is one, else the input

    def _jpeg(self, image: Image.Image) -> bytes:
        out = io.BytesIO()
        image.save(out, "JPEG", quality=self.config.quality)
        return out.getvalue()

    def _make_room(self, files: int, size: int) -> None:
        """Delete the oldest snapshots until `files` more files of `size` bytes fit under the limits."""
        while self._kept and (self._files + files > self.config.max_files or self._bytes + size > self.config.max_bytes):
            old = self._kept.popleft()
            for file_name in old.names:
                (self.folder / file_name).unlink(missing_ok=True)
            self._files -= len(old.names)
            self._bytes -= old.size
            self.counters["dropped"] += 1

    def _scan(self) -> None:
        """Our snapshot files already in the folder, oldest first; temp files of a crashed write removed."""
        found: dict[str, list[tuple[float, str, int]]] = {}
        with os.scandir(self.folder) as entries:
            for entry in entries:
                if _is_temp(entry.name):
                    Path(entry.path).unlink(missing_ok=True)
                    continue
                match = _NAME.match(entry.name)
                if match and entry.is_file(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    found.setdefault(match.group(1), []).append((st.st_mtime, entry.name, st.st_size))
        # Oldest first by modification time (not by name: a Pi without a clock may have started in 1970).
        for stem, files in sorted(found.items(), key=lambda item: (min(f[0] for f in item[1]), item[0])):
            self._kept.append(_Kept(stem, [f[1] for f in files], sum(f[2] for f in files)))
            self._files += len(files)
            self._bytes += sum(f[2] for f in files)


def _is_temp(name: str) -> bool:
    """write_atomic's temp files for our names: .<name>.<random>.tmp"""
    if not (name.startswith(".") and name.endswith(".tmp")):
        return False
    return bool(_NAME.match(name[1:-4].rpartition(".")[0]))
