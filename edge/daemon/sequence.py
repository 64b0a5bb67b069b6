"""The record sequence number: strictly increasing for a device, across restarts and crashes."""

# Writing the number after every record would cost an fsync per record. Instead a block of numbers
# is reserved by persisting its end (the high-water mark) atomically before any of them is used;
# after a crash the next run starts at that mark. Numbers are therefore unique and increasing but
# may skip (at most one block per crash); a clean shutdown persists the exact next number.

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from edge.daemon import statelock
from edge.errors import ConfigError
from edge.fsutil import explain_mkdir, write_atomic

log = logging.getLogger("edge.seq")

BLOCK = 1000
FILE_NAME = "seq"


class RecordSequence:
    """`next()` hands out numbers; `close()` records where to continue."""

    def __init__(self, state_dir: Path, block: int = BLOCK) -> None:
        self.path = Path(state_dir) / FILE_NAME
        self.block = block
        self._lock = threading.Lock()
        try:
            Path(state_dir).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"state_dir: cannot create {state_dir} ({explain_mkdir(Path(state_dir), exc)})") from exc
        self._lock_fd = statelock.hold(Path(state_dir))
        try:
            text = self.path.read_text().strip() if self.path.exists() else "0"
        except OSError as exc:
            self._release()
            raise ConfigError(f"state_dir: cannot use {state_dir} ({exc.strerror or exc}); it must be writable by the service") from exc
        try:
            self._next = int(text)
        except ValueError:
            # A damaged file is no reason to stop; a fresh mark far ahead keeps numbers increasing
            # as long as the clock does.
            self._next = int(time.time() * 1000)
            log.error("%s: unreadable (%r); continuing from %d", self.path, text[:40], self._next)
        self._mark = self._next
        self._reserve()

    def _reserve(self) -> None:
        self._mark = self._next + self.block
        self._persist(self._mark)

    def _persist(self, value: int) -> None:
        try:
            write_atomic(self.path, f"{value}\n".encode())
        except OSError as exc:
            raise ConfigError(f"state_dir: cannot write {self.path} ({exc.strerror or exc})") from exc

    def next(self) -> int:
        with self._lock:
            if self._next >= self._mark:
                try:
                    self._reserve()
                except ConfigError as exc:
                    # Keep publishing; only a crash before the disk recovers could repeat numbers.
                    log.error("%s", exc)
                    self._mark = self._next + self.block
            value = self._next
            self._next += 1
            return value

    def advance_past(self, used: int) -> None:
        """Number the next records above `used`: a number another daemon published as this device
        (edge/sinks/mqtt/clash.py). Skipping numbers is allowed; repeating one is not."""
        with self._lock:
            if used < self._next:
                return
            log.warning(
                "record numbers up to %d were already published as this device_id (a replaced device, or a restored or cloned state_dir): "
                "continuing from %d",
                used,
                used + 1,
            )
            self._next = used + 1
            if self._next >= self._mark:
                try:
                    self._reserve()
                except ConfigError as exc:
                    log.error("%s", exc)
                    self._mark = self._next + self.block

    def close(self) -> None:
        """Persist the exact next number so a clean restart leaves no gap; release the state_dir."""
        with self._lock:
            try:
                self._persist(self._next)
                self._mark = self._next
            finally:
                self._release()

    def _release(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1
