"""Home Assistant discovery on the wire: the configs announced, again when Home Assistant comes online; stale ones removed."""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edge.sinks.mqtt import connection, homeassistant

if TYPE_CHECKING:
    from edge.config import HomeAssistantConfig

log = logging.getLogger("edge.sinks.mqtt.sink")


class Discovery:
    """The messages come from homeassistant.py. paho's thread calls `connected` and `on_message`
    (they only set flags and queue topics); the pump thread calls `publish`."""

    def __init__(self, config: HomeAssistantConfig, device_id: str, prefix: str, **what: Any) -> None:
        """`what`: discovery_messages' answers, snapshots, view_check and light_check."""
        self.messages = homeassistant.discovery_messages(config.discovery_prefix, device_id, prefix, **what) if config.enabled else []
        self._topics = frozenset(topic for topic, _ in self.messages)
        self._filter = homeassistant.own_configs_filter(config.discovery_prefix, device_id)
        self._status = homeassistant.status_topic(config.discovery_prefix)
        self._stale: queue.SimpleQueue[str] = queue.SimpleQueue()  # retained configs we no longer announce
        self._due = False

    def connected(self, client: Any) -> None:
        """On every connect: the broker's retained configs of this device are what was announced
        before, so subscribe to them (any not announced now, an answer removed or snapshots turned
        off, gets removed), and to Home Assistant's status; announce."""
        for topic in [self._filter] + ([self._status] if self.messages else []):
            rc, _ = client.subscribe(topic, qos=1)
            if rc != 0:
                log.warning("MQTT sink: cannot subscribe to %s (rc %s)", topic, rc)
        self._due = bool(self.messages)

    def on_message(self, topic: str, payload: bytes) -> bool:
        """Whether the message was discovery's and leaves the pump work to do."""
        import paho.mqtt.client as mqtt

        if topic == self._status and payload == b"online":  # Home Assistant (re)started: announce again
            self._due = True
            return True
        if payload and topic not in self._topics and mqtt.topic_matches_sub(self._filter, topic):
            self._stale.put(topic)
            return True
        return False

    def publish(self, client: Any, connected: Callable[[], bool]) -> None:
        """Announce when due; an empty retained config removes a stale entity from Home Assistant and the broker."""
        if self._due and connected():
            self._due = False
            for topic, payload in self.messages:
                connection.publish_checked(client, topic, payload, qos=1, retain=True)
        while connected():
            try:
                topic = self._stale.get_nowait()
            except queue.Empty:
                return
            log.info("MQTT sink: removing Home Assistant entity %s (no longer configured)", topic)
            connection.publish_checked(client, topic, "", qos=1, retain=True)
