"""What the booted stages (tests/system, tests/pi) share: processes, waits, clean-up, the broker in their netns and its subscriber."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

# A host command line run in the target's network namespace (nsenter --net=..., ip netns exec ...).
InNetns = Callable[[Sequence[str | os.PathLike[str]]], list[str]]


def run(cmd: Sequence[str | os.PathLike[str]], check: bool = True, timeout: float = 120, **kw: object) -> subprocess.CompletedProcess[str]:
    """subprocess.run with text output captured and a timeout, raising with stderr on failure."""
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, check=False, **kw)  # type: ignore[call-overload]
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc  # type: ignore[no-any-return]


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float, kill_timeout: float = 5) -> None:
    """SIGTERM a process we started, and SIGKILL it if it has not exited within `timeout` seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(kill_timeout)


def wait_for(what: str, predicate: Callable[[], object], timeout: float, interval: float) -> object:
    """The predicate's first truthy value, polled every `interval` s; AssertionError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def wait_port(in_netns: InNetns, port: int, timeout: float) -> None:
    """Until something listens on 127.0.0.1:`port` in the namespace (probed from inside it)."""
    probe = f"import socket,sys\ntry: socket.create_connection(('127.0.0.1',{port}),1).close()\nexcept OSError: sys.exit(1)"
    deadline = time.monotonic() + timeout
    while run(in_netns(["python3", "-c", probe]), check=False).returncode != 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing listens on port {port} in the target's network namespace after {timeout} s")
        time.sleep(0.2)


def clean_up(steps: Sequence[Callable[[], None]]) -> None:
    """Every step, even after one failed; one RuntimeError naming each that did."""
    errors = []
    for step in steps:
        try:
            step()
        except Exception as exc:  # keep cleaning up; report at the end
            errors.append(f"{step.__name__}: {exc}")
    if errors:
        raise RuntimeError("cleanup incomplete: " + "; ".join(errors))


def start_broker(workdir: Path, in_netns: InNetns) -> subprocess.Popen[bytes]:
    """A real mosquitto on the namespace's loopback port 1883, logging to workdir/mosquitto.log."""
    conf = workdir / "mosquitto.conf"
    conf.write_text("listener 1883 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n")
    log = open(workdir / "mosquitto.log", "wb")  # noqa: SIM115 - lives as long as the broker
    broker = subprocess.Popen(in_netns(["mosquitto", "-c", conf]), stdout=log, stderr=log, start_new_session=True)
    wait_port(in_netns, 1883, 10)
    return broker


class Subscriber:
    """mosquitto_sub on everything under `topic`, written to workdir/mqtt.log, read back as lines and records."""

    def __init__(self, workdir: Path, in_netns: InNetns, topic: str) -> None:
        self.log, self.topic = workdir / "mqtt.log", topic
        with open(self.log, "wb") as log:
            cmd = in_netns(["mosquitto_sub", "-h", "127.0.0.1", "-q", "1", "-v", "-t", f"{topic}/#"])
            self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()

    def records(self) -> list[dict[str, object]]:
        """The classification records, in the order they arrived."""
        prefix = f"{self.topic}/classification "
        return [json.loads(line[len(prefix) :]) for line in self.lines() if line.startswith(prefix)]

    def stop(self) -> None:
        stop_process(self._proc, 5)
