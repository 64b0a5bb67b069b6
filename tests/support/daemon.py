"""Helpers for tests that drive a real `mnv1-edge run` subprocess: configs, a notify socket."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edge.config import to_toml

EXE = str(Path(sys.executable).with_name("mnv1-edge"))


def write_config(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(to_toml(data))
    return path


class NotifySocket:
    """A real sd_notify datagram socket; collects (monotonic time, message) pairs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            t = time.monotonic()
            self.messages.extend((t, m) for m in data.decode().split("\n"))

    def wait_for(self, message: str, after: float = 0.0, timeout: float = 20.0) -> float:
        """The time `message` arrived (first one after `after`); fails after `timeout` seconds."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for t, m in list(self.messages):
                if t >= after and m == message:
                    return t
            time.sleep(0.02)
        raise AssertionError(f"no {message!r} after {after} within {timeout} s; got {self.messages[-10:]}")

    def count(self, message: str, start: float, end: float) -> int:
        return sum(1 for t, m in list(self.messages) if start <= t < end and m == message)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1)
        self.sock.close()


def start(
    config: Path, *args: str, notify: NotifySocket | None = None, watchdog_usec: int = 0, stdout: Any = subprocess.DEVNULL
) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env.pop("NOTIFY_SOCKET", None)
    env.pop("WATCHDOG_USEC", None)
    env.pop("JOURNAL_STREAM", None)
    if notify is not None:
        env["NOTIFY_SOCKET"] = str(notify.path)
    if watchdog_usec:
        env["WATCHDOG_USEC"] = str(watchdog_usec)
    return subprocess.Popen([EXE, "run", "--config", str(config), *args], env=env, stdout=stdout, stderr=subprocess.PIPE, text=True)


def base_config(tmp_path: Path, model: Path, **source: Any) -> dict[str, Any]:
    """A synthetic source into a JSON Lines file, with a record for every frame (the defaults
    publish on a change of the voted label only, and random frames seldom change it)."""
    return {
        "state_dir": str(tmp_path / "state"),
        "stats_interval_s": 1.0,
        "model": {"path": str(model)},
        "source": {"kind": "synthetic", "synthetic": source},
        "results": {"smoothing": "none", "publish": "every"},
        "sinks": {"file": {"path": str(tmp_path / "results.jsonl"), "fsync": "never"}},
    }


def wait_for_line(proc: subprocess.Popen[str], text: str, timeout: float = 60.0) -> str:
    """The first line of the daemon's stderr that contains `text` (the lines before it are read and
    dropped); fails after `timeout` seconds. A wait on the daemon itself, not a sleep: a loaded
    machine starts Python, NumPy and the model several times slower."""
    assert proc.stderr is not None
    stream = proc.stderr
    found: list[str] = []

    def read() -> None:  # a thread: readline blocks, and a text pipe buffers lines select cannot see
        for line in stream:
            if text in line:
                found.append(line)
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    if not found:
        raise AssertionError(f"no line with {text!r} from the daemon within {timeout} s (exit status {proc.poll()})")
    return found[0]


@contextmanager
def running(config: Path, *args: str, notify: NotifySocket, watchdog_usec: int = 0) -> Iterator[subprocess.Popen[str]]:
    """`start`, and whatever happens in the block: kill the daemon if it still runs, close the socket."""
    proc = start(config, *args, notify=notify, watchdog_usec=watchdog_usec)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()
