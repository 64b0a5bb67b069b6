"""Evidence snapshots: the frame behind an answer change as JPEGs beside its record, in a folder bounded by size and count."""

# The pipeline thread only decides (`claim`, which names the files so the published record can say
# which) and hands over the frame (`take`: a 48 KiB copy of the model's input and the frame's still
# (edge/sources/still.py), frozen first when it reads a reused buffer: the Pi camera's main stream).
# Encoding, the still's decode and the fsync'ed writes happen in this module's own thread, so an SD card's
# slow fsync delays a snapshot, never a frame. A snapshot is 2 or 3 files
# sharing a stem, written with write_atomic (no reader sees a torn file):
#   <stem>.jpg        the model's input (128x128, after the region of interest): what the record names
#   <stem>-view.jpg   the frame's still: the whole frame, longest side <= max_side (when the source has one)
#   <stem>.json       the record, with its `snapshot` field
# Before a snapshot is written, the oldest snapshots are deleted until it fits under max_files and
# max_bytes, so the folder never holds more (a write_atomic temp file replaces its final name).
#
# A record names its snapshot before the writer has written it, so a name is claimed only when the
# snapshot can be written: the folder exists (re-created if it was deleted), has room for the input
# and the record (NEEDED_BYTES), and the writer is not failing (after a failure, claims wait for a
# probe write that succeeds, once per back-off step). A still that cannot be written or does not fit
# max_bytes is left out; the input and the record always fit the smallest caps. What is left is a
# write failing in the instant after the claim (an I/O error, the disk filled meanwhile): counted.

from __future__ import annotations

import io
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edge.daemon.snapshotfolder import SnapshotFolder, stem_for
from edge.errors import SinkError
from edge.fsutil import explain_mkdir, write_atomic
from edge.sources.still import ReusedStill, Still
from edge.stats import SnapshotCounters

if TYPE_CHECKING:
    from PIL import Image

    from edge.config import SnapshotsConfig
    from edge.record import Record
    from edge.sources import Frame

log = logging.getLogger("edge.daemon.snapshots")

QUEUE = 4  # snapshots waiting for the writer; more are skipped (counted), never queued unbounded
WAIT_S = 30.0  # the longest a file source waits for the writer (a folder on a dead disk must not hang the daemon)
FILE_MODE = 0o640  # pictures of somebody's premises: not world-readable


@dataclass(frozen=True)
class _Job:
    record: Record
    pixels: np.ndarray
    still: Still | None


class SnapshotWriter:
    """`open`, then per published record `claim` (the file name, or None) and `take`; `close` at the end."""

    def __init__(self, config: SnapshotsConfig, publish: Callable[[bytes], None] | None = None) -> None:
        """`publish` gets each saved snapshot's JPEG (the still, else the input), in the writer thread."""
        self.config = config
        self.folder = Path(config.path)
        self.publish = publish
        # view_errors: snapshots saved without their still (<stem>-view.jpg), by its published name
        self.counters = {"saved": 0, "dropped": 0, "skipped": 0, "no_room": 0, "errors": 0, "view_errors": 0}
        self.store = SnapshotFolder(self.folder, config.max_files, config.max_bytes)
        self._last = -1e18  # monotonic time of the last claimed snapshot
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._room = threading.Semaphore(QUEUE)  # places in the queue: taken by claim(), given back when written
        self._thread: threading.Thread | None = None
        self._said_still_too_large = False

    # --- pipeline thread ---------------------------------------------------------------------

    def open(self) -> None:
        """Create the folder, remove temp files a crash left, learn what is kept, start the thread."""
        try:
            self.store.open()
        except OSError as exc:
            why = explain_mkdir(self.folder, exc)
            raise SinkError(f"snapshots.path: cannot use {self.folder} ({why}); create it or fix its permissions") from exc
        self.counters["dropped"] += self.store.make_room(0, 0)  # the limits may have shrunk since the last run
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
        if not self.store.writable(now):
            self.counters["no_room"] += 1
            return None
        if not (self._room.acquire(timeout=WAIT_S) if wait else self._room.acquire(blocking=False)):
            self.counters["skipped"] += 1
            return None
        self._last = now
        return stem_for(seq, ts) + ".jpg"

    def take(self, record: Record, frame: Frame) -> None:
        """Queue the claimed snapshot; only the 128x128 input is copied (the source may reuse its buffer),
        and a still on a reused buffer (the Pi camera's, edge/sources/mainstill.py) is frozen now."""
        still = frame.still.freeze() if isinstance(frame.still, ReusedStill) else frame.still
        self._jobs.put(_Job(record, frame.pixels.copy(), still))  # claim() took a place in the queue

    def stats(self) -> SnapshotCounters:
        return SnapshotCounters(**self.counters, files=self.store.files, bytes=self.store.bytes)

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
            except Exception as exc:  # a full disk, a folder gone: count it, stop claiming, keep the daemon running
                self.counters["errors"] += 1
                why = explain_mkdir(self.folder, exc) if isinstance(exc, OSError) else str(exc)
                self.store.fail(f"cannot write {job and job.record.snapshot} in {self.folder} ({why})", time.monotonic())
            finally:
                if job is not None:
                    self._room.release()
                self._jobs.task_done()

    def _save(self, job: _Job) -> None:
        name = job.record.snapshot
        assert name is not None
        stem = name.removesuffix(".jpg")
        files = self._encode(job, name, stem)
        size = sum(len(data) for _, data in files)
        if size > self.config.max_bytes:
            raise SinkError(f"{size} bytes do not fit snapshots.max_bytes")
        if not self.folder.is_dir():  # deleted since the claim
            self.store.create_and_probe()
        self.counters["dropped"] += self.store.make_room(len(files), size)
        kept = self.store.start(stem)
        for file_name, data in files:
            try:
                write_atomic(self.folder / file_name, data, FILE_MODE)
            except OSError as exc:
                if file_name.endswith("-view.jpg"):  # the still is extra: the input and the record may still fit
                    self.counters["view_errors"] += 1
                    log.debug("snapshots: no still for %s: %s", stem, exc)
                    continue
                raise
            self.store.written(kept, file_name, len(data))
        self.counters["saved"] += 1
        if self.publish is not None:
            still = [data for file_name, data in files if file_name.endswith("-view.jpg") and file_name in kept.names]
            self.publish(still[0] if still else files[-1][1])  # the still when it was saved, else the input (never the record)

    def _encode(self, job: _Job, name: str, stem: str) -> list[tuple[str, bytes]]:
        """The snapshot's files, the named input last (it means a whole snapshot): the still when it
        can be made and fits max_bytes, the record, the input."""
        files: list[tuple[str, bytes]] = []
        if job.still is not None:
            try:
                files.append((stem + "-view.jpg", self._jpeg(job.still(self.config.max_side))))
            except Exception as exc:  # the image file went away, a frame that will not convert
                self.counters["view_errors"] += 1
                log.debug("snapshots: no still for %s: %s", stem, exc)
        files.append((stem + ".json", (job.record.to_json() + "\n").encode()))
        from PIL import Image

        files.append((name, self._jpeg(Image.fromarray(job.pixels))))
        size = sum(len(data) for _, data in files)
        if files[0][0].endswith("-view.jpg") and size > self.config.max_bytes:
            # The input and the record always fit (NEEDED_BYTES is under the smallest max_bytes).
            self.counters["view_errors"] += 1
            if not self._said_still_too_large:
                log.warning(
                    "snapshots: a view of %d bytes does not fit snapshots.max_bytes (%d); saved without it: raise max_bytes or lower max_side",
                    len(files[0][1]),
                    self.config.max_bytes,
                )
                self._said_still_too_large = True
            files.pop(0)
        return files

    def _jpeg(self, image: Image.Image) -> bytes:
        out = io.BytesIO()
        image.save(out, "JPEG", quality=self.config.quality)
        return out.getvalue()
