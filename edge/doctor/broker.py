"""The MQTT broker: a short connect with the sink's own credentials and TLS settings."""

from __future__ import annotations

import os
import ssl
import time
from typing import Any

from edge.doctor.check import FAIL, OK, SKIP, Check, Context
from edge.errors import EdgeError

TIMEOUT_S = 5.0
TLS_FIX = "check sinks.mqtt.tls.ca_file (the CA that signed the broker's certificate) and that host matches the certificate"
PORT_FIX = "check sinks.mqtt.port is an MQTT listener (8883 needs tls.enabled)"


def checks(ctx: Context) -> list[Check]:
    if ctx.config is None:
        return []
    if not ctx.config.sinks.mqtt.enabled:
        return [Check("broker", SKIP, "the MQTT sink is off (sinks.mqtt.enabled = false)")]
    return [connect_check(ctx)]


def connect_check(ctx: Context) -> Check:
    from edge.sinks.mqtt.connection import new_client, tls_context
    from edge.sinks.mqtt.credentials import mqtt_credentials

    assert ctx.config is not None
    m = ctx.config.sinks.mqtt
    where = f"{m.host}:{m.port}{' (TLS)' if m.tls.enabled else ''}"
    try:
        credentials = mqtt_credentials(m, ctx.config_path)
        context = tls_context(m.tls) if m.tls.enabled else None
    except EdgeError as exc:
        return Check("broker", FAIL, str(exc), "fix the file named (readable by the service user, UTF-8)")
    # Never the daemon's client id: the broker would disconnect the running daemon for it.
    client = new_client(m, f"mnv1-edge-doctor-{os.getpid()}", "mnv1-edge/doctor", credentials, context)
    client.will_clear()  # a doctor that dies mid-check must not publish "offline" for the device
    who = f"as {credentials.username}" if credentials else "without credentials"
    try:
        reason = _connect(client, m.host, m.port)
    except ssl.SSLError as exc:
        return Check(
            "broker",
            FAIL,
            f"{where}: TLS handshake failed ({exc.reason or exc})",
            TLS_FIX,
        )
    except (OSError, TimeoutError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
        return Check("broker", FAIL, f"{where}: unreachable ({why})", "check sinks.mqtt.host and port, that the broker runs, and firewalls between")
    finally:
        client.disconnect()
        client.loop(0.1)
    if reason is None:
        return Check("broker", FAIL, f"{where}: no CONNACK within {TIMEOUT_S:g} s", PORT_FIX)
    if reason.is_failure:
        fix = "check sinks.mqtt.username (or username_file) and password_file / $MNV1_EDGE_MQTT_PASSWORD"
        return Check("broker", FAIL, f"{where}: refused {who}: {reason}", fix)
    return Check("broker", OK, f"{where}: connected {who}")


def _connect(client: Any, host: str, port: int) -> Any:
    """The CONNACK's reason code, or None when none came within TIMEOUT_S; raises OSError when unreachable."""
    result: list[Any] = []
    client.on_connect = lambda _c, _u, _f, reason, _p: result.append(reason)
    client.connect_timeout = TIMEOUT_S
    client.connect(host, port, keepalive=int(TIMEOUT_S * 2))
    deadline = time.monotonic() + TIMEOUT_S
    while not result and time.monotonic() < deadline:
        rc = client.loop(0.1)
        if rc != 0 and not result:  # the broker closed the connection without a CONNACK
            break
    return result[0] if result else None
