"""MQTT test clients: a QoS 1 collecting subscriber, an MqttSink in a killable subprocess, mosquitto_sub."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

DRIVER = Path(__file__).parent / "mqtt_driver.py"
REPO = Path(__file__).resolve().parents[2]


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class Collector:
    """A QoS 1 subscriber with a persistent session, so it also gets what arrives while it is away."""

    def __init__(self, port: int, topic: str, client_id: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.topic = topic
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 1)
        self.subscribed = threading.Event()
        self.client.connect_async("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        assert self.subscribed.wait(10), "subscriber did not connect"

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        rc, _mid = client.subscribe(self.topic, qos=1)
        assert rc == mqtt.MQTT_ERR_SUCCESS
        self.subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((message.topic, bytes(message.payload)))

    def topics(self) -> list[str]:
        with self.lock:
            return [t for t, _ in self.messages]

    def seqs(self) -> list[int]:
        with self.lock:
            return [json.loads(payload)["seq"] for topic, payload in self.messages if topic.endswith("/classification")]

    def unique_in_order(self) -> list[int]:
        """Seq values in arrival order after dropping repeats (what a deduping consumer sees)."""
        seen: set[int] = set()
        out = []
        for seq in self.seqs():
            if seq not in seen:
                seen.add(seq)
                out.append(seq)
        return out

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Driver:
    """tests/support/mqtt_driver.py in a subprocess: an MqttSink we can kill -9."""

    def __init__(self, port: int, spool: Path, log: Path, first: int = 1, keepalive: int = 5) -> None:
        self.log = log
        args = [sys.executable, str(DRIVER), "--port", str(port), "--spool", str(spool), "--first", str(first), "--keepalive", str(keepalive)]
        with open(log, "a") as err:
            self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True, cwd=REPO)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.expect("ready")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())

    def expect(self, prefix: str, timeout: float = 30) -> str:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"driver said nothing for {timeout} s; its log: {self.log.read_text()[-2000:]}") from None
        assert line.startswith(prefix), f"expected {prefix!r}, got {line!r}; log: {self.log.read_text()[-2000:]}"
        return line

    def command(self, line: str, answer: str, timeout: float = 30) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.expect(answer, timeout)

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def mosquitto_sub(port: int, topic: str, count: int, wait_s: int = 15) -> subprocess.Popen[str]:
    """mosquitto_sub printing the first `count` messages on `topic` (QoS 1), giving up after `wait_s`."""
    cmd = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-t", topic, "-q", "1", "-C", str(count), "-W", str(wait_s)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
