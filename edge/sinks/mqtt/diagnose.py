"""Why an MQTT connection failed after TCP connected but before the broker's CONNACK, in words."""

# paho reports all of these as one "Unspecified error" disconnect (or a keepalive timeout) and never
# calls on_connect: a TLS port spoken to in plain MQTT, a server that is not MQTT (a web server, a
# silent port), a broker that drops the CONNECT (a client id it rejects: mosquitto logs "protocol
# error" and closes). What the server sent back, if anything, and one TLS probe tell them apart.

from __future__ import annotations

import socket
import ssl
import threading

PROBE_TIMEOUT_S = 3.0
_TLS_RECORD_TYPES = (0x15, 0x16)  # alert, handshake: the first byte of a TLS server's answer


def speaks_tls(host: str, port: int, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether host:port answers a TLS ClientHello like a TLS server (certificates not checked)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw, context.wrap_socket(raw, server_hostname=host) as tls:
            tls.version()
        return True
    except ssl.SSLError as exc:
        # An alert from the server (e.g. it wants a client certificate) is still TLS; garbage or a
        # closed connection in answer to the ClientHello is not.
        reason = (exc.reason or "").upper()
        return "ALERT" in reason
    except OSError:
        return False


def plain_port_answered(exc: BaseException) -> bool:
    """Whether a TLS handshake failed the way a port that does not speak TLS makes it fail: closed, or garbage."""
    return isinstance(exc, (ConnectionResetError, ssl.SSLEOFError, BrokenPipeError)) or (
        isinstance(exc, ssl.SSLError) and (exc.reason or "").upper() in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "HTTP_REQUEST")
    )


def tls_refused_hint(exc: BaseException) -> str:
    """For a TLS handshake (tls.enabled) that a plain port answered by closing or with garbage."""
    if plain_port_answered(exc):
        return "; the port does not seem to speak TLS: check sinks.mqtt.port (8883 is usual for TLS) or set sinks.mqtt.tls.enabled = false"
    return ""


class HandshakeWatch:
    """What one connection attempt received before CONNACK; the TLS probe's verdict for a streak.

    `received` is fed from paho's network thread (the socket reads); `hint` is asked from the same
    thread in on_disconnect, so no lock is needed for those; the probe result is cached per streak
    of failures (`reset` after a successful connect) so each back-off step costs no new probe."""

    def __init__(self, host: str, port: int, tls: bool, client_id: str, keepalive_s: int) -> None:
        self.host, self.port, self.tls, self.client_id, self.keepalive_s = host, port, tls, client_id, keepalive_s
        self.received = b""
        self._tls_port: bool | None = None
        self._lock = threading.Lock()

    def new_attempt(self) -> None:
        self.received = b""

    def feed(self, data: bytes) -> None:
        if len(self.received) < 16:
            self.received += data[: 16 - len(self.received)]

    def reset(self) -> None:
        with self._lock:
            self._tls_port = None

    def _port_speaks_tls(self) -> bool:
        with self._lock:
            if self._tls_port is None:
                self._tls_port = speaks_tls(self.host, self.port)
            return self._tls_port

    def hint(self, keepalive_timeout: bool) -> str:
        """The likely cause of a connection that ended before CONNACK, as a clause for a log line."""
        got = self.received
        if got.startswith(b"HTTP/"):
            return "it answered in HTTP, not MQTT: check sinks.mqtt.host and sinks.mqtt.port (a web server, or a WebSocket listener?)"
        if got and got[0] in _TLS_RECORD_TYPES and not self.tls:
            return "it answered in TLS: set sinks.mqtt.tls.enabled = true (port 8883 is usual for TLS)"
        if got:
            return f"it answered with bytes that are not MQTT ({got[:8].hex(' ')}): not an MQTT server; check sinks.mqtt.host and sinks.mqtt.port"
        if not self.tls and self._port_speaks_tls():
            return "the port speaks TLS and this client spoke plain MQTT: set sinks.mqtt.tls.enabled = true (and tls.ca_file)"
        if keepalive_timeout:
            return (
                f"it accepted the connection but did not answer the MQTT CONNECT within sinks.mqtt.keepalive_s ({self.keepalive_s} s): "
                "not an MQTT server, or a firewall or proxy holding the connection"
            )
        return (
            f"it closed the connection without answering the MQTT CONNECT: the broker rejected client id {self.client_id!r} "
            "or the connection (its log says why; mosquitto logs a protocol error)"
        )
