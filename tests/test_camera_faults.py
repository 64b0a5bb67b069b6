"""Camera faults on a real `mnv1-edge run` subprocess with the fake picamera2 importable: recovered in-process, the watchdog never starved."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.support.daemon import EXE, NotifySocket, write_config
from tests.support.fake_camera_package import write_package
from tests.support.fake_picamera2 import CONTROL_ENV, SCENE_ENV

WATCHDOG_USEC = 3_000_000  # the daemon pings every 1.5 s while frames flow


class Daemon:
    """The daemon with the fake camera on its PYTHONPATH; its log lines collected as they come."""

    def __init__(self, tmp_path: Path, config: Path, notify: NotifySocket, control: Path, scene: Path) -> None:
        write_package(tmp_path / "site")
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "JOURNAL_STREAM")}
        env.update(
            PYTHONPATH=os.pathsep.join([str(tmp_path / "site"), env.get("PYTHONPATH", "")]),
            NOTIFY_SOCKET=str(notify.path),
            WATCHDOG_USEC=str(WATCHDOG_USEC),
            **{CONTROL_ENV: str(control), SCENE_ENV: str(scene)},
        )
        self.proc = subprocess.Popen([EXE, "run", "--config", str(config)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_line(self, pattern: str, timeout: float = 30) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for line in list(self.lines):
                if re.search(pattern, line):
                    return line
            time.sleep(0.05)
        raise AssertionError(f"no log line matching {pattern!r} within {timeout} s:\n" + "\n".join(self.lines[-30:]))

    def count(self, pattern: str) -> int:
        return sum(1 for line in list(self.lines) if re.search(pattern, line))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
        return self.proc.returncode


@pytest.mark.slow
def test_a_cancelled_and_a_frozen_camera_recover_without_starving_the_watchdog(tmp_path: Path, converted_model: Path, shared: Path) -> None:
    control = tmp_path / "camera-control"
    control.write_text("ok 0\n")
    config = write_config(
        tmp_path / "c.toml",
        {
            "state_dir": str(tmp_path / "state"),
            "stats_interval_s": 1.0,
            "model": {"path": str(converted_model)},
            "source": {"kind": "picamera2", "stall_timeout_s": 5.0, "picamera2": {"framerate": 5.0}},
            "sinks": {"file": {"path": str(tmp_path / "results.jsonl"), "fsync": "never"}},
        },
    )
    notify = NotifySocket(tmp_path / "notify")
    daemon = Daemon(tmp_path, config, notify, control, shared / "data" / "samples" / "parrot.jpg")
    try:
        ready = notify.wait_for("READY=1", timeout=60)
        notify.wait_for("WATCHDOG=1", after=ready)
        # A frontend timeout: every request of this session comes back cancelled, capture_array(wait=) times out.
        control.write_text("cancel 1\n")
        daemon.wait_line(r"picamera2:0: capture failed \(no frame within 1 s\); reopening the camera")
        reopened = notify.wait_for("WATCHDOG=1", after=time.monotonic())
        daemon.wait_line(r"picamera2:0: camera reopened")
        # A hung pipeline: the same frame forever; found after stall_timeout_s, the camera reopened.
        control.write_text("freeze 2\n")
        daemon.wait_line(r"picamera2:0: frames unchanged \(within 0 levels\) for \d+ s \(source.stall_timeout_s\): frozen; reopening it")
        daemon.wait_line(r"'frozen': 1, 'frozen_reopens': 1")  # the stats counters
        after = notify.wait_for("WATCHDOG=1", after=time.monotonic())
        assert daemon.proc.poll() is None
    finally:
        rc = daemon.stop()
        notify.close()
    log = "\n".join(daemon.lines)
    assert rc == 0, log
    assert daemon.count(r"capture failed") == 1 and daemon.count(r"frozen; reopening it") == 1, log
    assert daemon.count(r"no frame from .* watchdog pings stopped") == 0, log  # never stalled as far as systemd could tell
    pings = [t for t, m in notify.messages if m == "WATCHDOG=1" and ready <= t <= after]
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert reopened < after and max(gaps) < WATCHDOG_USEC / 1e6, gaps  # systemd would have killed it after a longer gap
