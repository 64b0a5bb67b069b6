"""The record sequence number: strictly increasing for a device, across restarts and crashes."""

# Writing the number after every record would cost an fsync per record. Instead a block of numbers
# is reserved by persisting its end (the high-water mark) atomically before any of them is used;
# after a crash the next run starts at that mark. Numbers are therefore unique and increasing but
# may skip (at most one block per crash); a clean shutdown persists the exact next number.

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from pathlib import Path

from edge.config import STATE_LOCK
from edge.errors import BusyError, ConfigError
from edge.fsutil import explain_mkdir, write_atomic

log = logging.getLogger("edge.seq")

BLOCK = 1000
FILE_NAME = "seq"


def lock_state_dir(state_dir: Path) -> int:
    """Take <state_dir>/STATE_LOCK without waiting; returns the descriptor that holds it (close it
    to release). BusyError names the holder's pid when another process has it."""
    path = Path(state_dir) / STATE_LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except PermissionError:
        # Left by a run as another user (sudo mnv1-edge run): flock works on a read-only
        # descriptor too, only the pid is not recorded.
        fd = _open_read_only(path)
    except OSError as exc:
        raise ConfigError(f"state_dir: cannot open {path} ({exc.strerror or exc}); it must be writable by the service") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise BusyError(
            f"state_dir: {state_dir} is in use by another mnv1-edge (pid {holder}); stop it first, or give this one a state_dir of its own"
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:
        pass  # a read-only lock file: the lock holds, the pid is just not shown to a second daemon
    return fd


def _holder(fd: int) -> str:
    """The pid recorded in the lock file, if that process lives (a holder that could not write
    its pid leaves an older one behind)."""
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    try:
        os.kill(int(text), 0)
    except PermissionError:
        return text  # alive, another user's
    except (ValueError, OSError):
        return "?"
    return text


def _open_read_only(path: Path) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError(f"state_dir: cannot open {path} ({exc.strerror or exc}); it must be readable by the service") from exc


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
        self._lock_fd = lock_state_dir(Path(state_dir))
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
