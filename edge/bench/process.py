"""Whole `mnv1-edge run` processes measured from outside: cold start and peak RSS."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from edge.errors import EdgeError


def _spawn(args: list[str], stdout: int) -> int:
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        return os.posix_spawn(args[0], args, os.environ, file_actions=[(os.POSIX_SPAWN_DUP2, stdout, 1), (os.POSIX_SPAWN_DUP2, devnull, 2)])
    finally:
        os.close(devnull)


def _hwm_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((int(line.split()[1]) for line in f if line.startswith("VmHWM:")), 0)
    except OSError:
        return 0  # exiting


def _wait(pid: int, what: str, peak_kb: int = 0) -> float:
    """Wait for a spawned run; its peak RSS in MB, read from its own VmHWM while it runs.

    Not ru_maxrss: a child counts the memory it shared with this bench before exec (fork and vfork
    alike), so that figure would grow with every stage the bench ran before it."""
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        peak_kb = max(peak_kb, _hwm_kb(pid))
        time.sleep(0.01)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise EdgeError(f"bench: the {what} run of `mnv1-edge run` failed with status {code}")
    return peak_kb / 1024


def cold_start(config_path: Path) -> tuple[float, float, float]:
    """(seconds to the first result line, seconds to exit, peak RSS MB) of `mnv1-edge run --once`."""
    exe = str(Path(sys.executable).with_name("mnv1-edge"))
    read_end, write_end = os.pipe()
    t0 = time.perf_counter()
    try:
        pid = _spawn([exe, "run", "--config", str(config_path), "--once"], write_end)
    finally:
        os.close(write_end)
    with os.fdopen(read_end) as out:
        first = out.readline()
        t_first = time.perf_counter() - t0
        peak_kb = _hwm_kb(pid)  # the run may end before _wait looks
        out.read()
    rss = _wait(pid, "cold-start", peak_kb)
    t_exit = time.perf_counter() - t0
    if not first:
        raise EdgeError("bench: the cold-start run of `mnv1-edge run` printed no result")
    return t_first, t_exit, rss


def steady_rss(config_path: Path, frames: int) -> float:
    """Peak RSS (MB) of a daemon that classified `frames` frames."""
    exe = str(Path(sys.executable).with_name("mnv1-edge"))
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        pid = _spawn([exe, "run", "--config", str(config_path), "--max-frames", str(frames)], devnull)
    finally:
        os.close(devnull)
    return _wait(pid, "RSS")
