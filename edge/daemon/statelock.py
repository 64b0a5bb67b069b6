"""`<state_dir>/lock`: who owns a state directory, for the daemon, `capture` and `check-config`."""

# flock'ed (exclusive) by the process that owns the state directory, for its whole life. Two daemons
# on one state_dir would hand out the same record numbers, and consumers dedupe by seq, so the
# second is refused; `capture` holds it while it uses the camera the service would open. The kernel
# drops the lock when the process dies (no stale lock). The holder writes its pid into the file, so
# the one refused can name it.

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from edge.errors import BusyError, ConfigError

NAME = "lock"


def hold(state_dir: Path, create: bool = True) -> int:
    """Take the lock without waiting; the descriptor that holds it (close it to release). Without
    `create`, -1 when there is no lock file to take (no daemon has run on this state_dir).
    BusyError names the holder's pid when another process has it."""
    path = Path(state_dir) / NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0), 0o644)
    except PermissionError:
        # Left by a run as another user (sudo mnv1-edge run): flock works on a read-only
        # descriptor too, only the pid is not recorded.
        fd = _open_read_only(path, create)
    except OSError as exc:
        if not create:
            return -1
        raise ConfigError(f"state_dir: cannot open {path} ({exc.strerror or exc}); it must be writable by the service") from exc
    if fd < 0:
        return -1
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = _recorded_pid(fd)
        os.close(fd)
        raise BusyError(
            f"state_dir: {state_dir} is in use by another mnv1-edge (pid {pid}); stop it first, or give this one a state_dir of its own"
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:
        pass  # a read-only lock file: the lock holds, the pid is just not shown to a second daemon
    return fd


def holder(state_dir: Path) -> str | None:
    """The pid of the process holding the lock now ("?" when it recorded none), or None when nothing
    does. Looked at with a shared lock held for an instant: a daemon starting in that instant is
    refused (exit 75) and restarted by systemd; flock has no test-only operation."""
    try:
        fd = os.open(Path(state_dir) / NAME, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None  # no lock file yet (or unreadable): nothing runs there
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _recorded_pid(fd)
    finally:
        os.close(fd)
    return None


def _recorded_pid(fd: int) -> str:
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


def _open_read_only(path: Path, create: bool) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        if not create:
            return -1
        raise ConfigError(f"state_dir: cannot open {path} ({exc.strerror or exc}); it must be readable by the service") from exc
