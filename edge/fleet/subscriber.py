"""Subscribes to the fleet's topics with the MQTT sink's credentials and TLS, feeding a `Fleet`."""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from typing import Any

from edge.config import MqttSinkConfig
from edge.errors import EX_UNAVAILABLE, EdgeError
from edge.fleet.state import Fleet, Row
from edge.sinks.mqtt.connection import login_refused
from edge.sinks.mqtt.credentials import mqtt_credentials
from edge.sinks.mqtt.diagnose import plain_port_answered, speaks_tls

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0


class BrokerError(EdgeError):
    """The broker cannot be reached, or refuses us."""

    exit_code = EX_UNAVAILABLE


class Subscriber:
    """A paho client on its own network thread; `rows` reads a consistent view under a lock."""

    def __init__(self, config: MqttSinkConfig, fleet: Fleet) -> None:
        self.config = config
        self.fleet = fleet
        self.where = f"{config.host}:{config.port}"
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._refused: str | None = None
        self._closed = False  # the connection ended before the subscriptions were acknowledged
        self._client: Any = None

    def start(self, timeout: float = CONNECT_TIMEOUT_S) -> None:
        """Connect and subscribe; returns once the broker acknowledged the subscriptions."""
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        credentials = mqtt_credentials(self.config)
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"mnv1-edge-fleet-{os.getpid()}-{os.urandom(3).hex()}",
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        if credentials is not None:
            client.username_pw_set(credentials.username, credentials.password)
        if self.config.tls.enabled:
            client.tls_set_context(tls_context(self.config))
            if self.config.tls.insecure:
                client.tls_insecure_set(True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self._client = client
        try:
            client.connect(self.config.host, self.config.port, keepalive=self.config.keepalive_s)
        except OSError as exc:  # ssl.SSLError is one
            if self.config.tls.enabled and plain_port_answered(exc):
                why = "the port does not seem to speak TLS; check --broker's port or leave out --tls"
                raise BrokerError(f"{self.where}: TLS handshake failed: {why}") from exc
            if isinstance(exc, ssl.SSLError):
                raise BrokerError(f"{self.where}: TLS handshake failed ({exc.reason or exc}); check --ca-file, --cert-file, --key-file") from exc
            raise BrokerError(f"{self.where}: cannot connect to the broker ({exc.strerror or exc}); check --broker") from exc
        client.loop_start()
        deadline = time.monotonic() + timeout
        while not self._subscribed.wait(0.05):
            if self._refused is not None or self._closed or time.monotonic() > deadline:
                self.stop()
                why = self._refused or (self._closed_why() if self._closed else f"did not answer within {timeout:g} s")
                raise BrokerError(f"{self.where}: the broker {why}")

    def _closed_why(self) -> str:
        """A connection closed before the broker's CONNACK: most often plain MQTT spoken to a TLS port."""
        if not self.config.tls.enabled and speaks_tls(self.config.host, self.config.port):
            return "closed the connection without an MQTT answer: the port speaks TLS; add --tls (and --ca-file)"
        return "closed the connection without an MQTT answer: not an MQTT port, or the broker rejected the connection (its log says why)"

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            hint = " (check --username and the password)" if login_refused(reason_code) else ""
            self._refused = f"refused the connection: {reason_code}{hint}"
            return
        client.subscribe([(topic, 1) for topic in self.fleet.topics])

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if not self._subscribed.is_set():
            self._closed = True

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reason_codes: Any, properties: Any) -> None:
        failed = [str(rc) for rc in reason_codes if rc.is_failure]
        if failed:
            self._refused = f"refused the subscription ({', '.join(failed)}; does the ACL allow reading {self.fleet.prefix}/#?)"
        else:
            self._subscribed.set()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        # paho's network thread: an exception here would end it, and the view would freeze.
        with self._lock:
            try:
                self.fleet.handle(message.topic, bytes(message.payload), bool(message.retain), time.time())
            except Exception as exc:
                self.fleet.ignored += 1
                log.debug("ignored a message on %s: %r", message.topic, exc)

    def rows(self, stale_after: float | None) -> list[Row]:
        with self._lock:
            return self.fleet.rows(time.time(), stale_after)

    def stop(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None


def tls_context(config: MqttSinkConfig) -> ssl.SSLContext:
    """The sink's TLS context, its error worded for this command's options."""
    from edge.errors import SinkError
    from edge.sinks.mqtt.connection import tls_context as sink_tls_context

    try:
        return sink_tls_context(config.tls)
    except SinkError as exc:
        cause = exc.__cause__ or exc
        raise BrokerError(f"cannot load the CA or client certificate ({cause}); check --ca-file, --cert-file and --key-file") from exc
