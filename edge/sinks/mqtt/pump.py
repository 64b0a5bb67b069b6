"""The MQTT sink's publishing pump: spool records to paho in order, a bounded in-flight window, acks, replay."""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Callable

from edge.sinks.mqtt.connection import Link
from edge.sinks.mqtt.spool import Pos, Spool

# One pump thread reads the spool from its delivery cursor and publishes at most `max_inflight`
# records at a time; acknowledgements (handed over by paho's network thread) advance the cursor in
# spool order. On every (re)connect paho's own copies of unacknowledged messages are dropped (by
# the sink's on_connect) and the pump replays from the cursor, so the broker always receives
# records in spool order (duplicates after a reconnect are possible: consumers dedupe by `seq`).

log = logging.getLogger(__name__)

FLUSH_EVERY_S = 0.2  # how often the delivery cursor is written (in place, no fsync)
_SEQ = re.compile(rb'"seq":(\d+)')


class _Inflight:
    __slots__ = ("acked", "next")

    def __init__(self, nxt: Pos) -> None:
        self.next = nxt
        self.acked = False


class Pump:
    """Moves records from `spool` to `link`'s client on `topic`; `periodic(now)` runs on each round."""

    def __init__(
        self,
        spool: Spool,
        link: Link,
        topic: str,
        *,
        qos: int,
        retain: bool,
        max_inflight: int,
        counters: dict[str, int],
        periodic: Callable[[float], None],
        hold: Callable[[float], str] = lambda now: "",
    ) -> None:
        """`hold(now)`: why records must wait in the spool now ("" when they need not): "settling"
        after a connect, "clash" while another daemon publishes as this device (clash.py)."""
        self.spool = spool
        self.link = link
        self.topic = topic
        self.qos = qos
        self.retain = retain
        self.max_inflight = max_inflight
        self.counters = counters  # the sink's: published, acked, publish_errors
        self._periodic = periodic
        self._hold = hold
        self._acks: queue.SimpleQueue[tuple[int, int]] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._sync_due = False
        self._closing = False
        self._close_deadline = 0.0
        # pump-thread state
        self._pending: deque[_Inflight] = deque()
        self._by_mid: dict[int, _Inflight] = {}
        self._read_pos = Pos(0, 0, 0)
        self._gen_seen = 0
        self.published_seq: int | None = None  # the highest record number handed to the broker (for the instance claim)

    @property
    def inflight(self) -> int:
        return len(self._pending)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="mqtt-pump", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def acked(self, gen: int, mid: int) -> None:
        """From paho's on_publish (called with paho's message lock held): only queue it."""
        self._acks.put((gen, mid))
        self._wake.set()

    def sync(self) -> None:
        """fdatasync the spool on the next round."""
        self._sync_due = True
        self._wake.set()

    def stop(self, timeout_s: float) -> None:
        """Drain the backlog while connected, for up to `timeout_s`, then end the thread."""
        self._close_deadline = time.monotonic() + timeout_s
        self._closing = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s + 5)

    def _main(self) -> None:
        next_flush = time.monotonic()
        while True:
            self._wake.wait(FLUSH_EVERY_S)
            self._wake.clear()
            try:
                next_flush = self._round(next_flush)
            except Exception:  # a bug here must not stop delivery for good: log and carry on
                log.exception("MQTT sink: unexpected error in the publisher thread")
                time.sleep(1)
            now = time.monotonic()
            # At stop a clash will not end in time: the records stay in the spool for the next start.
            if self._closing and (not self.link.connected or now >= self._close_deadline or not self._backlog() or self._hold(now) == "clash"):
                self._take_acks()
                return

    def _round(self, next_flush: float) -> float:
        """Take acks, replay after a reconnect, send, flush the spool when due; the next flush time."""
        self._take_acks()
        if self.link.gen != self._gen_seen:  # a new connection: replay from the cursor
            self._gen_seen = self.link.gen
            self._pending.clear()
            self._by_mid.clear()
            self._read_pos = Pos(0, 0, 0)
        self._send()
        now = time.monotonic()
        if now >= next_flush or self._sync_due:
            self.spool.flush(sync=self._sync_due)
            self._sync_due = False
            next_flush = now + FLUSH_EVERY_S
        self._periodic(now)
        return next_flush

    def _note_seq(self, payload: bytes) -> None:
        """Record.to_json writes "seq" second: {"v":2,"seq":N,…}; a few bytes are enough to find it."""
        match = _SEQ.search(payload, 0, 40)
        if match is not None:
            seq = int(match[1])
            if self.published_seq is None or seq > self.published_seq:
                self.published_seq = seq

    def _backlog(self) -> bool:
        return bool(self._pending) or self.spool.depth() > 0

    def _take_acks(self) -> None:
        advanced: Pos | None = None
        while True:
            try:
                gen, mid = self._acks.get_nowait()
            except queue.Empty:
                break
            entry = self._by_mid.pop(mid, None) if gen == self._gen_seen else None
            if entry is not None:
                entry.acked = True
        while self._pending and self._pending[0].acked:
            advanced = self._pending.popleft().next
            self.counters["acked"] += 1
        if advanced is not None:
            self.spool.ack(advanced)

    def _send(self) -> None:
        room = self.max_inflight - len(self._pending)
        if room <= 0 or not self.link.connected or self.link.client is None or self._hold(time.monotonic()):
            return
        items = self.spool.read(self._read_pos, room)
        if not items:
            return
        import paho.mqtt.client as mqtt

        with self.link.lock:
            if self.link.gen != self._gen_seen or not self.link.connected:
                return  # reconnected meanwhile: the next round replays from the cursor
            for item in items:
                info = self.link.client.publish(self.topic, item.payload, qos=self.qos, retain=self.retain)
                if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                    self.counters["publish_errors"] += 1
                    log.warning("MQTT sink: publish to %s failed: %s; retrying", self.topic, mqtt.error_string(info.rc))
                    break
                self._note_seq(item.payload)
                entry = _Inflight(item.next)
                self._pending.append(entry)
                self._read_pos = item.next
                self.counters["published"] += 1
                if self.qos == 0:
                    entry.acked = True  # at most once: nothing to wait for
                else:
                    self._by_mid[info.mid] = entry
                if info.rc == mqtt.MQTT_ERR_NO_CONN:
                    break  # the connection dropped: the reconnect replays from the cursor
        if self.qos == 0:
            self._wake.set()
