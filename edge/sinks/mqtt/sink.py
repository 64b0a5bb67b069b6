"""MQTT sink: records spooled to disk first, published in order, deleted only after the broker's PUBACK."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge import __version__, jsontext
from edge.sinks.mqtt import connection
from edge.sinks.mqtt.clash import Claim, ClashNotices, ClashWatch
from edge.sinks.mqtt.credentials import mqtt_credentials
from edge.sinks.mqtt.diagnose import HandshakeWatch
from edge.sinks.mqtt.discovery import Discovery
from edge.sinks.mqtt.pump import Pump
from edge.sinks.mqtt.spool import Spool
from edge.stats import SinkCounters

if TYPE_CHECKING:
    from edge.config import MqttSinkConfig
    from edge.record import Record
    from edge.stats import StatsReport

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
        light_check: bool = False,
        seq_floor: Callable[[int], None] | None = None,
    ) -> None:
        """`answers`: the names the answer can take (one Home Assistant binary sensor each);
        `snapshots`: JPEGs are published on <prefix>snapshot (announced as an image entity);
        `view_check`: the stats carry the moved-camera check (announced as a problem sensor);
        `light_check`: the stats carry the light check (announced as a problem sensor too);
        `seq_floor(n)`: record numbers up to n were published as this device by another instance.

        Long only because it names every piece of state the three threads share (see the top of
        this module), in one place."""
        self.config = config
        self.device_id = device_id
        self.config_path = config_path
        self.prefix = config.prefix_for(device_id)
        self.clash = ClashWatch()
        # One id per run: a second daemon of this device_id (a cloned SD card) would otherwise take
        # the connection from the first at every reconnect; clash.py finds and names it instead.
        self.client_id = config.client_id or f"mnv1-edge-{device_id}-{self.clash.instance}"
        self.topic_records = self.prefix + "classification"
        self.topic_availability = self.prefix + "availability"
        self.topic_stats = self.prefix + "stats"
        self.topic_snapshot = self.prefix + "snapshot"
        self.topic_instance = self.prefix + "instance"
        self._seq_floor = seq_floor
        self.where = f"{config.host}:{config.port}"
        self.spool = Spool(Path(config.spool.path), config.spool.max_bytes, config.spool.max_age_s, config.spool.sync_interval_s)
        self.counters = {"published": 0, "acked": 0, "connects": 0, "publish_errors": 0, "dropped_closed": 0}
        self._link = connection.Link()
        self._backoff = connection.paho_backoff(config)
        self._pump = Pump(
            self.spool,
            self._link,
            self.topic_records,
            qos=config.qos,
            retain=config.retain,
            max_inflight=config.max_inflight,
            counters=self.counters,
            periodic=self._periodic,
            hold=self._hold,
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
        self.discovery = Discovery(
            config.homeassistant, device_id, self.prefix, answers=answers, snapshots=snapshots, view_check=view_check, light_check=light_check
        )
        self._model_sha: str | None = None
        # The newest snapshot JPEG (set by the snapshot writer's thread, published by the pump's):
        # only the latest matters, so a slot, not a queue; re-sent after each reconnect because
        # paho drops unacknowledged messages on reconnect (see _on_connect).
        self._snapshot: bytes | None = None
        self._snapshot_due = False
        self._snapshot_gen = -1
        if snapshots:
            self.counters["snapshots"] = 0
        self._notices = ClashNotices(device_id, self.where, self.topic_instance, config.reconnect_max_s)

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

    def report(self, stats: StatsReport) -> None:
        """The daemon's periodic stats; published (merged with ours) at most every stats_interval_s."""
        self._daemon_stats = stats.to_dict()
        self._stats_due = True
        self._pump.wake()

    def stats(self) -> SinkCounters:
        """A record is lost only when the spool drops it (size, age, full disk), cannot store it, or the sink is closing."""
        now = time.monotonic()
        clash = self.clash.clash(now)
        spool = self.spool.stats()
        counters = {
            **spool.to_dict(),
            "mqtt_connected": self._link.connected,
            "mqtt_inflight": self._pump.inflight,
            "mqtt_holding": bool(self._hold(now)),
            "mqtt_clash": clash,
            "mqtt_clashes": self.clash.episodes,
            **({"mqtt_clash_with": self.clash.other.describe()} if clash and self.clash.other else {}),
            **{f"mqtt_{k}": v for k, v in self.counters.items()},
        }
        lost = spool.dropped + spool.write_errors + self.counters["dropped_closed"]
        return SinkCounters(counters, lost=lost, errors=self.counters["publish_errors"] + spool.write_errors, spool=spool)

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
            # paho writes the DISCONNECT from its network thread: stopping that thread first would
            # close the socket without it, and the broker would publish the last will after "offline".
            until = time.monotonic() + 1.0
            while self._link.connected and time.monotonic() < until:
                time.sleep(0.01)
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
            # Subscribed before the claim is published: the broker then sends the claim it holds
            # (retained: an earlier run's) and our own back (clash.py).
            for topic in (self.topic_instance, self.topic_availability):
                client.subscribe(topic, qos=1)
            self._publish_claim(client, connect=True)
        self.counters["connects"] += 1
        log.info("MQTT sink: connected to %s%s", self.where, " again" if self._ever_connected else "")
        self._ever_connected = True
        self._backoff.reset()
        self._watch.reset()
        self.discovery.connected(client)
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
            # say why it probably failed. The one exception to "never block": the first failure of a
            # streak may probe the port for TLS (at most diagnose.PROBE_TIMEOUT_S), while there is
            # no connection to serve.
            hint = self._watch.hint(keepalive_timeout=connection.keepalive_timeout(reason_code))
            connection.log_no_session(self.where, hint, self._backoff.next_delay())
        self._pump.wake()

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        self._pump.acked(self._link.gen, mid)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        if message.topic == self.topic_instance:
            self._on_claim(client, bytes(message.payload), bool(message.retain))
        elif message.topic == self.topic_availability:
            # Ours says "online" while we are connected: an "offline" is the last will of an earlier
            # run the broker noticed dead only now (a power cut), or another daemon's clean stop.
            # No loop: "offline" comes only from a stop or a last will, and our "online" does not answer "online".
            if message.payload == b"offline" and self._link.connected and not self._closing:
                connection.publish_checked(client, self.topic_availability, "online", qos=1, retain=True)
        elif self.discovery.on_message(message.topic, bytes(message.payload)):
            self._pump.wake()

    def _on_claim(self, client: Any, payload: bytes, retained: bool) -> None:
        claim = Claim.parse(payload)
        if claim is None:
            return
        if claim.instance != self.clash.instance and claim.seq is not None and self._seq_floor is not None:
            self._seq_floor(claim.seq)  # its numbers are taken (an earlier run's too: then nothing changes)
        now = time.monotonic()
        if self.clash.received(claim, retained, now) and self.clash.reply_due(now):
            self._publish_claim(client)  # so the other sees us within a round trip
        elif retained and claim.instance != self.clash.instance:
            log.info("MQTT sink: the broker holds the claim of %s: an earlier run of this device, unless it publishes again", claim.describe())

    def _publish_claim(self, client: Any, connect: bool = False) -> None:
        self.clash.seq = self._pump.published_seq  # numbers another instance must not reuse
        connection.publish_checked(client, self.topic_instance, self.clash.claim().to_json(), qos=1, retain=True)
        self.clash.sent(time.monotonic(), connect)

    def _hold(self, now: float) -> str:
        """Why records wait in the spool now, or "" (the pump's `hold`)."""
        if self.clash.clash(now):
            return "clash"
        if not self.clash.settled(now):
            return "settling"
        return ""

    # --- the pump thread's periodic extras -------------------------------------------------

    def _periodic(self, now: float) -> None:
        self._watch_clash(now)
        self._maybe_publish_stats(now)
        self._maybe_publish_snapshot()
        self.discovery.publish(self._link.client, lambda: self._link.connected)

    def _watch_clash(self, now: float) -> None:
        """The claim repeated while a clash lasts (the evidence kept live); the operator told (clash.py)."""
        if self.clash.clash(now) and self.clash.repeat_due(now) and self._link.connected:
            self._publish_claim(self._link.client)
        self._notices.update(self.clash, now, self._link.connected, self.spool.depth)

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
                "instance": self.clash.instance,
                "version": __version__,
                "sink_uptime_s": round(now - self._started, 1),
                "ts": rfc3339(time.time()),
                **({"model_sha256": self._model_sha} if self._model_sha else {}),
                **self._daemon_stats,
                **self.stats().counters,
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
