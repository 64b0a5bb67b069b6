"""MQTT sink: records spooled to disk first, published in order, deleted only after the broker's PUBACK."""

from __future__ import annotations

import json
import logging
import queue
import ssl
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge import __version__
from edge.errors import SinkError
from edge.sinks.mqtt import homeassistant
from edge.sinks.mqtt.credentials import Credentials, mqtt_credentials
from edge.sinks.mqtt.spool import Pos, Spool

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt

    from edge.config import MqttSinkConfig
    from edge.record import Record

# Threads and who does what:
# * the pipeline thread calls `write`: one append to the spool (a page-cache write), never blocks on
#   the network and never raises;
# * paho's network thread (`loop_start`) connects, reconnects with capped exponential back-off and
#   runs the callbacks, which only set flags and queue acknowledged message ids;
# * one pump thread reads the spool from its delivery cursor and publishes at most `max_inflight`
#   records at a time; acknowledgements advance the cursor. On every (re)connect paho's own copies
#   of unacknowledged messages are dropped and the pump replays from the cursor, so the broker
#   always receives records in spool order (duplicates after a reconnect are possible: consumers
#   dedupe by `seq`).

log = logging.getLogger(__name__)

RECONNECT_MIN_S = 1
_FLUSH_EVERY_S = 0.2  # how often the delivery cursor is written (in place, no fsync)
_EXTRA_INFLIGHT = 16  # room in paho's window for availability, stats and discovery messages


def topic_prefix(config: MqttSinkConfig, device_id: str) -> str:
    prefix = config.topic_prefix or f"mnv1-edge/{device_id}/"
    return prefix if prefix.endswith("/") else prefix + "/"


class _Inflight:
    __slots__ = ("acked", "next")

    def __init__(self, nxt: Pos) -> None:
        self.next = nxt
        self.acked = False


def _client_class() -> type[mqtt.Client]:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import MQTTErrorCode

    class Client(mqtt.Client):
        """Keeps the reason of the last failed connect: paho's on_connect_fail is not told it."""

        connect_error: Exception | None = None

        def reconnect(self) -> MQTTErrorCode:
            try:
                return super().reconnect()
            except OSError as exc:
                self.connect_error = exc
                raise

    return Client


class MqttSink:
    """The Sink protocol over paho-mqtt 2.x with a durable spool (see edge/spool.py)."""

    name = "mqtt"

    def __init__(
        self,
        config: MqttSinkConfig,
        device_id: str,
        *,
        config_path: Path | None = None,
        answers: Sequence[str] = (),
        snapshots: bool = False,
    ) -> None:
        """`answers`: the names the answer can take (one Home Assistant binary sensor each);
        `snapshots`: JPEGs are published on <prefix>snapshot (announced as an image entity)."""
        self.config = config
        self.device_id = device_id
        self.config_path = config_path
        self.prefix = topic_prefix(config, device_id)
        self.client_id = config.client_id or f"mnv1-edge-{device_id}"
        self.topic_records = self.prefix + "classification"
        self.topic_availability = self.prefix + "availability"
        self.topic_stats = self.prefix + "stats"
        self.where = f"{config.host}:{config.port}"
        self.spool = Spool(Path(config.spool.path), config.spool.max_bytes, config.spool.max_age_s, config.spool.sync_interval_s)
        self._client: Any = None
        self._acks: queue.SimpleQueue[tuple[int, int]] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._send_lock = threading.Lock()  # a publish batch and a (re)connect never interleave
        self._gen = 0  # connection generation, bumped by on_connect
        self._connected = False
        self._ever_connected = False
        self._closing = False
        self._closed = False
        self._close_deadline = 0.0
        self._fail_streak = 0
        self._pump: threading.Thread | None = None
        self._started = time.monotonic()
        self._daemon_stats: dict[str, Any] = {}
        self._stats_due = False
        self._last_stats = time.monotonic()
        self._ha_due = False
        self._sync_due = False
        ha = config.homeassistant
        self._ha_messages = (
            homeassistant.discovery_messages(ha.discovery_prefix, device_id, self.prefix, answers=answers, snapshots=snapshots) if ha.enabled else []
        )
        self._ha_topics = frozenset(topic for topic, _ in self._ha_messages)
        self._ha_filter = homeassistant.own_configs_filter(ha.discovery_prefix, device_id)
        self._ha_stale: queue.SimpleQueue[str] = queue.SimpleQueue()  # retained configs we no longer announce
        self._model_sha: str | None = None
        # pump-thread state
        self._pending: deque[_Inflight] = deque()
        self._by_mid: dict[int, _Inflight] = {}
        self._read_pos = Pos(0, 0, 0)
        self._gen_seen = 0
        self.counters = {"published": 0, "acked": 0, "connects": 0, "publish_errors": 0, "dropped_closed": 0}

    # --- Sink protocol ---------------------------------------------------------------------

    def open(self) -> None:
        # Everything that can fail on a config mistake comes before the spool opens (and locks its
        # directory), so such a failure leaves no descriptor or lock behind.
        credentials = mqtt_credentials(self.config, self.config_path)
        tls_context = self._tls_context() if self.config.tls.enabled else None
        self.spool.open()
        try:
            self._start_client(credentials, tls_context)
        except BaseException:
            self.spool.close()
            raise
        self._pump = threading.Thread(target=self._pump_main, name="mqtt-pump", daemon=True)
        self._pump.start()

    def _start_client(self, credentials: Credentials | None, tls_context: ssl.SSLContext | None) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        client = _client_class()(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=True,  # the spool, not a broker session, is what survives us
            protocol=mqtt.MQTTv311,
        )
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.will_set(self.topic_availability, "offline", qos=1, retain=True)
        if credentials is not None:
            client.username_pw_set(credentials.username, credentials.password)
        if tls_context is not None:
            client.tls_set_context(tls_context)
            if self.config.tls.insecure:
                client.tls_insecure_set(True)
                log.warning("sinks.mqtt.tls.insecure = true: the broker's host name is not checked")
        client.reconnect_delay_set(RECONNECT_MIN_S, max(RECONNECT_MIN_S, int(self.config.reconnect_max_s)))
        client.max_inflight_messages_set(self.config.max_inflight + _EXTRA_INFLIGHT)
        client.max_queued_messages_set(0)  # bounded by the pump's window instead
        self._client = client
        log.info("MQTT sink: publishing to %s under %s (client id %s)", self.where, self.prefix, self.client_id)
        client.connect_async(self.config.host, self.config.port, keepalive=self.config.keepalive_s)
        client.loop_start()

    def write(self, record: Record) -> None:
        if self._closing:
            self.counters["dropped_closed"] += 1
            return
        self._model_sha = record.model_sha256  # for the stats message: Home Assistant's model sensor
        if self.spool.append(record.to_json().encode()):
            self._wake.set()

    def report(self, stats: Mapping[str, Any]) -> None:
        """The daemon's periodic stats; published (merged with ours) at most every stats_interval_s."""
        self._daemon_stats = dict(stats)
        self._stats_due = True
        self._wake.set()

    def stats(self) -> dict[str, Any]:
        return {
            **self.spool.stats(),
            "mqtt_connected": self._connected,
            "mqtt_inflight": len(self._pending),
            **{f"mqtt_{k}": v for k, v in self.counters.items()},
        }

    def flush(self) -> None:
        self._sync_due = True
        self._wake.set()

    def close(self) -> None:
        """Drain the backlog (bounded by close_timeout_s), publish `offline`, disconnect."""
        if self._closed:
            return
        self._closed = True
        self._close_deadline = time.monotonic() + self.config.close_timeout_s
        self._closing = True
        self._wake.set()
        if self._pump is not None:
            self._pump.join(timeout=self.config.close_timeout_s + 5)
        client = self._client
        if client is not None:
            if self._connected:
                info = self._publish_extra(self.topic_availability, "offline", qos=1, retain=True)
                try:
                    if info is not None:
                        info.wait_for_publish(timeout=max(1.0, self._close_deadline - time.monotonic()))
                except (RuntimeError, ValueError) as exc:
                    log.warning("MQTT sink: could not publish availability offline at stop (%s); the broker's last will covers it", exc)
            client.disconnect()
            client.loop_stop()
        depth = self.spool.depth()
        self.spool.close()
        if depth:
            log.info("MQTT sink closed with %d records spooled; they are sent after the next start", depth)

    # --- paho callbacks (network thread: set flags, never block) ---------------------------

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            hint = " (check the username and password)" if reason_code.value in (0x86, 0x87, 4, 5) else ""
            log.error("MQTT broker %s refused the connection: %s%s; retrying in %d s", self.where, reason_code, hint, self._next_delay())
            return
        with self._send_lock:
            # Records paho still holds from the last connection would be re-sent ahead of the
            # replay: drop them; the pump re-sends everything from the spool's cursor in order.
            client.drop_out_messages()
            self._gen += 1
            self._connected = True
            self._publish_extra(self.topic_availability, "online", qos=1, retain=True)
        self.counters["connects"] += 1
        log.info("MQTT sink: connected to %s%s", self.where, " again" if self._ever_connected else "")
        self._ever_connected = True
        self._fail_streak = 0
        # The broker's retained configs of this device are what was announced before: any of them
        # not announced now (an answer removed, snapshots or discovery turned off) gets removed.
        topics = [self._ha_filter] + ([homeassistant.status_topic(self.config.homeassistant.discovery_prefix)] if self._ha_messages else [])
        for topic in topics:
            rc, _ = client.subscribe(topic, qos=1)
            if rc != 0:
                log.warning("MQTT sink: cannot subscribe to %s (rc %s)", topic, rc)
        self._ha_due = bool(self._ha_messages)
        self._wake.set()

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        exc = getattr(client, "connect_error", None)
        delay = self._next_delay()
        if isinstance(exc, ssl.SSLError):
            log.error("MQTT broker %s: TLS handshake failed: %s; check sinks.mqtt.tls; retrying in %d s", self.where, exc, delay)
        else:
            reason = (exc.strerror or str(exc)) if isinstance(exc, OSError) else "unknown error"
            log.warning("MQTT broker %s unreachable (%s); records are spooled; retrying in %d s", self.where, reason, delay)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        was_connected, self._connected = self._connected, False
        if was_connected and not self._closing:
            log.warning("MQTT sink: lost the connection to %s (%s); spooling records and reconnecting", self.where, reason_code)
        self._wake.set()

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        # Called with paho's message lock held: only hand the ack to the pump.
        self._acks.put((self._gen, mid))
        self._wake.set()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        import paho.mqtt.client as mqtt

        if message.topic == homeassistant.status_topic(self.config.homeassistant.discovery_prefix) and message.payload == b"online":
            self._ha_due = True
            self._wake.set()
        elif message.payload and message.topic not in self._ha_topics and mqtt.topic_matches_sub(self._ha_filter, message.topic):
            self._ha_stale.put(message.topic)
            self._wake.set()

    def _next_delay(self) -> int:
        """The back-off paho waits after this failure (it doubles from 1 s up to reconnect_max_s)."""
        delay = min(RECONNECT_MIN_S * 2**self._fail_streak, max(RECONNECT_MIN_S, int(self.config.reconnect_max_s)))
        self._fail_streak = min(self._fail_streak + 1, 30)
        return int(delay)

    # --- the pump thread -------------------------------------------------------------------

    def _pump_main(self) -> None:
        next_flush = time.monotonic()
        while True:
            self._wake.wait(_FLUSH_EVERY_S)
            self._wake.clear()
            try:
                self._take_acks()
                if self._gen != self._gen_seen:  # a new connection: replay from the cursor
                    self._gen_seen = self._gen
                    self._pending.clear()
                    self._by_mid.clear()
                    self._read_pos = Pos(0, 0, 0)
                self._send()
                now = time.monotonic()
                if now >= next_flush or self._sync_due:
                    self.spool.flush(sync=self._sync_due)
                    self._sync_due = False
                    next_flush = now + _FLUSH_EVERY_S
                self._maybe_publish_stats(now)
                if self._ha_due and self._connected:
                    self._ha_due = False
                    self._publish_discovery()
                self._remove_stale_discovery()
            except Exception:  # a bug here must not stop delivery for good: log and carry on
                log.exception("MQTT sink: unexpected error in the publisher thread")
                time.sleep(1)
            if self._closing and (not self._connected or time.monotonic() >= self._close_deadline or not self._backlog()):
                self._take_acks()
                return

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
        room = self.config.max_inflight - len(self._pending)
        if room <= 0 or not self._connected or self._client is None:
            return
        items = self.spool.read(self._read_pos, room)
        if not items:
            return
        import paho.mqtt.client as mqtt

        qos, retain = self.config.qos, self.config.retain
        with self._send_lock:
            if self._gen != self._gen_seen or not self._connected:
                return  # reconnected meanwhile: the next round replays from the cursor
            for item in items:
                info = self._client.publish(self.topic_records, item.payload, qos=qos, retain=retain)
                if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                    self.counters["publish_errors"] += 1
                    log.warning("MQTT sink: publish to %s failed: %s; retrying", self.topic_records, mqtt.error_string(info.rc))
                    break
                entry = _Inflight(item.next)
                self._pending.append(entry)
                self._read_pos = item.next
                self.counters["published"] += 1
                if qos == 0:
                    entry.acked = True  # at most once: nothing to wait for
                else:
                    self._by_mid[info.mid] = entry
                if info.rc == mqtt.MQTT_ERR_NO_CONN:
                    break  # the connection dropped: the reconnect replays from the cursor
        if qos == 0:
            self._wake.set()

    def _maybe_publish_stats(self, now: float) -> None:
        interval = self.config.stats_interval_s
        if interval <= 0 or not self._connected:
            return
        since = now - self._last_stats
        # The daemon's report() sets the pace; publish on our own if it has not reported lately.
        if (self._stats_due and since >= 0.9 * interval) or since >= 2 * interval:
            self._stats_due = False
            self._last_stats = now
            from edge.record import rfc3339

            payload = {
                "device_id": self.device_id,
                "version": __version__,
                "sink_uptime_s": round(now - self._started, 1),
                "ts": rfc3339(time.time()),
                **({"model_sha256": self._model_sha} if self._model_sha else {}),
                **self._daemon_stats,
                **self.stats(),
            }
            # Retained: a late subscriber (Home Assistant, `mnv1-edge fleet`) sees the last stats at once.
            self._publish_extra(self.topic_stats, json.dumps(payload, separators=(",", ":"), default=str), qos=0, retain=True)

    def _publish_discovery(self) -> None:
        for topic, payload in self._ha_messages:
            self._publish_extra(topic, payload, qos=1, retain=True)

    def _remove_stale_discovery(self) -> None:
        """An empty retained config removes the entity from Home Assistant and the config from the broker."""
        while self._connected:
            try:
                topic = self._ha_stale.get_nowait()
            except queue.Empty:
                return
            log.info("MQTT sink: removing Home Assistant entity %s (no longer configured)", topic)
            self._publish_extra(topic, "", qos=1, retain=True)

    def _publish_extra(self, topic: str, payload: str, qos: int, retain: bool) -> Any:
        """Publish a message outside the spool (availability, stats, discovery), checking the result."""
        import paho.mqtt.client as mqtt

        try:
            info = self._client.publish(topic, payload, qos=qos, retain=retain)
        except ValueError as exc:  # invalid topic or payload: a bug or a bad prefix, not transient
            log.error("MQTT sink: cannot publish to %s: %s", topic, exc)
            return None
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            log.warning("MQTT sink: publish to %s failed: %s", topic, mqtt.error_string(info.rc))
            return None
        return info

    def _tls_context(self) -> ssl.SSLContext:
        tls = self.config.tls
        try:
            context = ssl.create_default_context(cafile=tls.ca_file or None)
            if tls.cert_file:
                context.load_cert_chain(tls.cert_file, tls.key_file or None)
        except (OSError, ssl.SSLError) as exc:
            raise SinkError(f"sinks.mqtt.tls: cannot load the CA or client certificate ({exc}); check ca_file, cert_file and key_file") from exc
        context.check_hostname = not tls.insecure
        return context
