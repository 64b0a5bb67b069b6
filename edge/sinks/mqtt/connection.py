"""The MQTT sink's paho client: construction (last will, credentials, TLS, windows), its back-off, reason codes and log lines."""

from __future__ import annotations

import logging
import ssl
import threading
from typing import TYPE_CHECKING, Any

from edge.backoff import Backoff
from edge.errors import SinkError
from edge.log import PACED
from edge.sinks.mqtt.diagnose import HandshakeWatch, tls_refused_hint

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt

    from edge.config import MqttSinkConfig, TlsConfig
    from edge.sinks.mqtt.credentials import Credentials

log = logging.getLogger(__name__)

RECONNECT_MIN_S = 1
_EXTRA_INFLIGHT = 16  # room in paho's window for availability, stats and discovery messages


class Link:
    """The connection as the pump sees it; `gen` counts connections, so a pump that sees it change
    knows paho's copies of unacknowledged messages were dropped and replays from the spool."""

    def __init__(self) -> None:
        self.client: Any = None
        self.gen = 0
        self.connected = False
        self.lock = threading.Lock()  # a publish batch and a (re)connect never interleave


def reconnect_max_s(config: MqttSinkConfig) -> int:
    """paho's reconnect_delay_set takes whole seconds."""
    return max(RECONNECT_MIN_S, int(config.reconnect_max_s))


def paho_backoff(config: MqttSinkConfig) -> Backoff:
    """The delays paho waits between attempts (doubling from 1 s up to sinks.mqtt.reconnect_max_s), for the log lines."""
    return Backoff(reconnect_max_s(config), first_s=RECONNECT_MIN_S)


def client_class(handshake: HandshakeWatch | None = None) -> type[mqtt.Client]:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import MQTTErrorCode

    class Client(mqtt.Client):
        """Keeps the reason of the last failed connect (paho's on_connect_fail is not told it) and,
        for `watch`, the first bytes each connection received (paho reports a server that answers
        in TLS or HTTP, or closes at the CONNECT, only as "Unspecified error")."""

        connect_error: Exception | None = None
        watch = handshake

        def reconnect(self) -> MQTTErrorCode:
            if self.watch is not None:
                self.watch.new_attempt()
            try:
                return super().reconnect()
            except OSError as exc:
                self.connect_error = exc
                raise

        # paho 2.x reads the socket only through _sock_recv; were it renamed, the watch would just
        # see no bytes and the hint would fall back to the TLS probe.
        def _sock_recv(self, bufsize: int) -> bytes:
            data: bytes = super()._sock_recv(bufsize)
            if self.watch is not None:
                self.watch.feed(data)
            return data

    return Client


def tls_context(tls: TlsConfig) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=tls.ca_file or None)
        if tls.cert_file:
            context.load_cert_chain(tls.cert_file, tls.key_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise SinkError(f"sinks.mqtt.tls: cannot load the CA or client certificate ({exc}); check ca_file, cert_file and key_file") from exc
    context.check_hostname = not tls.insecure
    return context


def new_client(
    config: MqttSinkConfig,
    client_id: str,
    will_topic: str,
    credentials: Credentials | None,
    context: ssl.SSLContext | None,
    watch: HandshakeWatch | None = None,
) -> mqtt.Client:
    """A paho client set up for the sink, callbacks not yet attached and not yet connecting;
    `watch` is told what each connection attempt receives before CONNACK."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = client_class(watch)(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=True,  # the spool, not a broker session, is what survives us
        protocol=mqtt.MQTTv311,
    )
    client.will_set(will_topic, "offline", qos=1, retain=True)
    if credentials is not None:
        client.username_pw_set(credentials.username, credentials.password)
    if context is not None:
        client.tls_set_context(context)
        if config.tls.insecure:
            client.tls_insecure_set(True)
            log.warning("sinks.mqtt.tls.insecure = true: the broker's host name is not checked")
    client.reconnect_delay_set(RECONNECT_MIN_S, reconnect_max_s(config))
    client.max_inflight_messages_set(config.max_inflight + _EXTRA_INFLIGHT)
    client.max_queued_messages_set(0)  # bounded by the pump's window instead
    return client


def publish_checked(client: Any, topic: str, payload: str | bytes, qos: int, retain: bool) -> Any:
    """Publish a message outside the spool (availability, stats, discovery, snapshots); its MQTTMessageInfo, or None if it failed."""
    import paho.mqtt.client as mqtt

    try:
        info = client.publish(topic, payload, qos=qos, retain=retain)
    except ValueError as exc:  # invalid topic or payload: a bug or a bad prefix, not transient
        log.error("MQTT sink: cannot publish to %s: %s", topic, exc)
        return None
    if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
        log.warning("MQTT sink: publish to %s failed: %s", topic, mqtt.error_string(info.rc))
        return None
    return info


def login_refused(reason_code: Any) -> bool:
    """A CONNACK refusing the credentials (paho 2 hands MQTT 3.1.1's return codes 4 and 5 to
    on_connect as these MQTT 5 reason codes; paho's docs: compare them by name)."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.reasoncodes import ReasonCode

    return any(reason_code == ReasonCode(PacketTypes.CONNACK, name) for name in ("Bad user name or password", "Not authorized"))


def keepalive_timeout(reason_code: Any) -> bool:
    """A disconnect because paho gave up waiting for the server (keepalive): a silent server."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.reasoncodes import ReasonCode

    return bool(reason_code == ReasonCode(PacketTypes.DISCONNECT, "Keep alive timeout"))


def log_refused(where: str, reason_code: Any, delay: float) -> None:
    hint = " (check the username and password)" if login_refused(reason_code) else ""
    log.error("MQTT broker %s refused the connection: %s%s; retrying in %d s", where, reason_code, hint, delay, extra=PACED)


def log_unreachable(where: str, exc: Exception | None, delay: float, tls: bool = False) -> None:
    hint = tls_refused_hint(exc) if tls and exc is not None else ""
    if isinstance(exc, ssl.SSLError) and not hint:
        log.error("MQTT broker %s: TLS handshake failed: %s; check sinks.mqtt.tls; retrying in %d s", where, exc, delay, extra=PACED)
    else:
        reason = (exc.strerror or str(exc)) if isinstance(exc, OSError) else "unknown error"
        if isinstance(exc, TimeoutError):
            reason = "no answer to the TCP connect: a host that is down, a wrong address, or a firewall dropping packets"
        log.warning("MQTT broker %s unreachable (%s)%s; records are spooled; retrying in %d s", where, reason, hint, delay, extra=PACED)


def log_no_session(where: str, hint: str, delay: float) -> None:
    """TCP connected but the MQTT handshake did not complete: one line per back-off step, with the likely cause."""
    log.warning("MQTT broker %s: no MQTT session: %s; records are spooled; retrying in %d s", where, hint, delay, extra=PACED)
