"""MQTT sink: records spooled to disk first, published in order, deleted only after the broker's PUBACK."""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge import __version__, jsontext
from edge.sinks.mqtt import connection, homeassistant
from edge.sinks.mqtt.credentials import mqtt_credentials
from edge.sinks.mqtt.diagnose import HandshakeWatch
from edge.sinks.mqtt.pump import Pump
from edge.sinks.mqtt.spool import Spool

if TYPE_CHECKING:
    from edge.config import MqttSinkConfig
    from edge.record import Record

# Threads and who does what:
# * the pipeline thread calls `write`: one append to the spool (a page-cache write), never blocks on
#   the network and never raises;
# * paho's network thread (`loop_start`) connects, reconnects with capped exponential back-off and
#   runs the callbacks below, which only set flags and queue acknowledged message ids;
# * the pump thread (pump.py) publishes from the spool and, on each round, the sink's stats and
#   Home Assistant discovery (`_periodic`).

log = logging.getLogger(__name__)


class MqttSink:
    """The Sink protocol over paho-mqtt 2.x with a durable spool (see spool/__init__.py)."""

    name = "mqtt"

    def __init__(
        self,
        config: MqttSinkConfig,
        device_id: str,
        *,
        config_path: Path | None = None,
        answers: Sequence[str] = (),
        snapshots: bool = False,
        view_check: bool = False,
    ) -> None:
        """`answers`: the names the answer can take (one Home Assistant binary sensor each);
        `snapshots`: JPEGs are published on <prefix>snapshot (announced as an image entity);
        `view_check`: the stats carry the moved-camera check (announced as a problem sensor).

        Long only because it names every piece of state the three threads share (see the top of
        this module), in one place."""
        self.config = config
        self.device_id = device_id
        self.config_path = config_path
        self.prefix = config.prefix_for(device_id)
        self.client_id = config.client_id or f"mnv1-edge-{device_id}"
        self.topic_records = self.prefix + "classification"
        self.topic_availability = self.prefix + "availability"
        self.topic_stats = self.prefix + "stats"
        self.topic_snapshot = self.prefix + "snapshot"
        self.where = f"{config.host}:{config.port}"
        self.spool = Spool(Path(config.spool.path), config.spool.max_bytes, config.spool.max_age_s, config.spool.sync_interval_s)
        self.counters = {"published": 0, "acked": 0, "connects": 0, "publish_errors": 0, "dropped_closed": 0}
        self._link = connection.Link()
        self._backoff = connection.Backoff(config.reconnect_max_s)
        self._pump = Pump(
            self.spool,
            self._link,
            self.topic_records,
            qos=config.qos,
            retain=config.retain,
            max_inflight=config.max_inflight,
            counters=self.counters,
            periodic=self._periodic,
        )
        self._ever_connected = False
        self._refused = False  # the broker's CONNACK said no (logged); the disconnect that follows is not news
        self._watch = HandshakeWatch(config.host, config.port, config.tls.enabled, self.client_id, config.keepalive_s)
        self._closing = False
        self._closed = False
        self._started = time.monotonic()
        self._daemon_stats: dict[str, Any] = {}
        self._stats_due = False
        self._last_stats = time.monotonic()
        self._ha_due = False
        ha = config.homeassistant
        self._ha_messages = (
            homeassistant.discovery_messages(ha.discovery_prefix, device_id, self.prefix, answers=answers, snapshots=snapshots, view_check=view_check)
            if ha.enabled
            else []
        )
        self._ha_topics = frozenset(topic for topic, _ in self._ha_messages)
        self._ha_filter = homeassistant.own_configs_filter(ha.discovery_prefix, device_id)
        self._ha_stale: queue.SimpleQueue[str] = queue.SimpleQueue()  # retained configs we no longer announce
        self._model_sha: str | None = None
        # The newest snapshot JPEG (set by the snapshot writer's thread, published by the pump's):
        # only the latest matters, so a slot, not a queue; re-sent after each reconnect because
        # paho drops unacknowledged messages on reconnect (see _on_connect).
        self._snapshot: bytes | None = None
        self._snapshot_due = False
        self._snapshot_gen = -1
        if snapshots:
            self.counters["snapshots"] = 0

    # --- Sink protocol ---------------------------------------------------------------------

    def open(self) -> None:
        # Everything that can fail on a config mistake comes before the spool opens (and locks its
        # directory), so such a failure leaves no descriptor or lock behind.
        credentials = mqtt_credentials(self.config, self.config_path)
        context = connection.tls_context(self.config.tls) if self.config.tls.enabled else None
        self.spool.open()
        try:
            client = connection.new_client(self.config, self.client_id, self.topic_availability, credentials, context, self._watch)
            client.on_connect = self._on_connect
            client.on_connect_fail = self._on_connect_fail
            client.on_disconnect = self._on_disconnect
            client.on_publish = self._on_publish
            client.on_message = self._on_message
            self._link.client = client
            log.info("MQTT sink: publishing to %s under %s (client id %s)", self.where, self.prefix, self.client_id)
            client.connect_async(self.config.host, self.config.port, keepalive=self.config.keepalive_s)
            client.loop_start()
        except BaseException:
            self.spool.close()
            raise
        self._pump.start()

    def write(self, record: Record) -> None:
        if self._closing:
            self.counters["dropped_closed"] += 1
            return
        self._model_sha = record.model_sha256  # for the stats message: Home Assistant's model sensor
        if self.spool.append(record.to_json().encode()):
            self._pump.wake()

    def snapshot(self, jpeg: bytes) -> None:
        """The newest evidence snapshot: published retained on <prefix>snapshot by the pump thread."""
        self._snapshot = jpeg
        self._snapshot_due = True
        self._pump.wake()

    def report(self, stats: Mapping[str, Any]) -> None:
        """The daemon's periodic stats; published (merged with ours) at most every stats_interval_s."""
        self._daemon_stats = dict(stats)
        self._stats_due = True
        self._pump.wake()

    def stats(self) -> dict[str, Any]:
        return {
            **self.spool.stats(),
            "mqtt_connected": self._link.connected,
            "mqtt_inflight": self._pump.inflight,
            **{f"mqtt_{k}": v for k, v in self.counters.items()},
        }

    def flush(self) -> None:
        self._pump.sync()

    def close(self) -> None:
        """Drain the backlog (bounded by close_timeout_s), publish `offline`, disconnect."""
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + self.config.close_timeout_s
        self._closing = True
        self._pump.stop(self.config.close_timeout_s)
        client = self._link.client
        if client is not None:
            if self._link.connected:
                info = connection.publish_checked(client, self.topic_availability, "offline", qos=1, retain=True)
                try:
                    if info is not None:
                        info.wait_for_publish(timeout=max(1.0, deadline - time.monotonic()))
                except (RuntimeError, ValueError) as exc:
                    log.warning("MQTT sink: could not publish availability offline at stop (%s); the broker's last will covers it", exc)
            client.disconnect()
            client.loop_stop()
        depth = self.spool.depth()
        self.spool.close()
        if depth and not self._ever_connected:
            log.warning("MQTT sink closed without ever reaching %s in this run: %d records wait in the spool for the next start", self.where, depth)
        elif depth:
            log.info("MQTT sink closed with %d records spooled; they are sent after the next start", depth)

    # --- paho callbacks (network thread: set flags, never block) ---------------------------

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            self._refused = True
            connection.log_refused(self.where, reason_code, self._backoff.next_delay())
            return
        with self._link.lock:
            # Records paho still holds from the last connection would be re-sent ahead of the
            # replay: drop them; the pump re-sends everything from the spool's cursor in order.
            client.drop_out_messages()
            self._link.gen += 1
            self._link.connected = True
            connection.publish_checked(client, self.topic_availability, "online", qos=1, retain=True)
        self.counters["connects"] += 1
        log.info("MQTT sink: connected to %s%s", self.where, " again" if self._ever_connected else "")
        self._ever_connected = True
        self._backoff.reset()
        self._watch.reset()
        # The broker's retained configs of this device are what was announced before: any of them
        # not announced now (an answer removed, snapshots or discovery turned off) gets removed.
        topics = [self._ha_filter] + ([homeassistant.status_topic(self.config.homeassistant.discovery_prefix)] if self._ha_messages else [])
        for topic in topics:
            rc, _ = client.subscribe(topic, qos=1)
            if rc != 0:
                log.warning("MQTT sink: cannot subscribe to %s (rc %s)", topic, rc)
        self._ha_due = bool(self._ha_messages)
        self._pump.wake()

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        connection.log_unreachable(self.where, getattr(client, "connect_error", None), self._backoff.next_delay(), self.config.tls.enabled)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        was_connected, self._link.connected = self._link.connected, False
        refused, self._refused = self._refused, False
        if was_connected and not self._closing:
            log.warning("MQTT sink: lost the connection to %s (%s); spooling records and reconnecting", self.where, reason_code)
        elif not was_connected and not self._closing and not refused:
            # TCP connected but no CONNACK came (paho calls neither on_connect nor on_connect_fail):
            # say why it probably failed. 0x8D: paho gave up waiting (keepalive) on a silent server.
            # The one exception to "never block": the first failure of a streak may probe the port
            # for TLS (at most diagnose.PROBE_TIMEOUT_S), while there is no connection to serve.
            hint = self._watch.hint(keepalive_timeout=getattr(reason_code, "value", 0) == 0x8D)
            connection.log_no_session(self.where, hint, self._backoff.next_delay())
        self._pump.wake()

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        self._pump.acked(self._link.gen, mid)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        import paho.mqtt.client as mqtt

        if message.topic == homeassistant.status_topic(self.config.homeassistant.discovery_prefix) and message.payload == b"online":
            self._ha_due = True
            self._pump.wake()
        elif message.payload and message.topic not in self._ha_topics and mqtt.topic_matches_sub(self._ha_filter, message.topic):
            self._ha_stale.put(message.topic)
            self._pump.wake()

    # --- the pump thread's periodic extras -------------------------------------------------

    def _periodic(self, now: float) -> None:
        self._maybe_publish_stats(now)
        self._maybe_publish_snapshot()
        if self._ha_due and self._link.connected:
            self._ha_due = False
            self._publish_discovery()
        self._remove_stale_discovery()

    def _maybe_publish_stats(self, now: float) -> None:
        interval = self.config.stats_interval_s
        if interval <= 0 or not self._link.connected:
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
            text = jsontext.dumps(payload, separators=(",", ":"), default=str)
            # Retained: a late subscriber (Home Assistant, `mnv1-edge fleet`) sees the last stats at once.
            connection.publish_checked(self._link.client, self.topic_stats, text, qos=0, retain=True)

    def _maybe_publish_snapshot(self) -> None:
        if self._snapshot is None or not self._link.connected or not (self._snapshot_due or self._snapshot_gen != self._link.gen):
            return
        self._snapshot_due = False  # before reading the slot: a newer JPEG arriving meanwhile is sent next round
        self._snapshot_gen = self._link.gen
        # Retained, so Home Assistant's image entity (and any late subscriber) shows the last one at once.
        if connection.publish_checked(self._link.client, self.topic_snapshot, self._snapshot, qos=1, retain=True) is not None:
            self.counters["snapshots"] = self.counters.get("snapshots", 0) + 1

    def _publish_discovery(self) -> None:
        for topic, payload in self._ha_messages:
            connection.publish_checked(self._link.client, topic, payload, qos=1, retain=True)

    def _remove_stale_discovery(self) -> None:
        """An empty retained config removes the entity from Home Assistant and the config from the broker."""
        while self._link.connected:
            try:
                topic = self._ha_stale.get_nowait()
            except queue.Empty:
                return
            log.info("MQTT sink: removing Home Assistant entity %s (no longer configured)", topic)
            connection.publish_checked(self._link.client, topic, "", qos=1, retain=True)
