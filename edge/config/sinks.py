"""The `[sinks]` settings: stdout, the JSON Lines file, MQTT with its spool, TLS and Home Assistant."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

from edge.config.fields import Need, section, setting


def has_control_chars(text: str) -> bool:
    """Characters MQTT brokers reject in a client id or topic ("protocol error"): C0 and C1 control
    characters and Unicode noncharacters (mosquitto's UTF-8 check, lib/utf8_mosq.c)."""
    return any(_bad_for_mqtt(ord(c)) for c in text)


def _bad_for_mqtt(code: int) -> bool:
    return code < 0x20 or 0x7F <= code <= 0x9F or 0xFDD0 <= code <= 0xFDEF or (code & 0xFFFE) == 0xFFFE


# MQTT's strings (topics, client ids) are UTF-8 with a 16-bit length: at most 65535 bytes (MQTT
# 3.1.1 section 1.5.3). paho fails to build a longer CONNECT (struct.error) in its network thread.
MQTT_MAX_BYTES = 65535


def too_long(text: str) -> str:
    """Why `text` cannot be an MQTT topic or client id for its length, or ""."""
    size = len(text.encode("utf-8", "surrogatepass"))
    return f"{size} bytes; MQTT allows at most {MQTT_MAX_BYTES}" if size > MQTT_MAX_BYTES else ""


def topic_problem(topic: str) -> str:
    """Why `topic` cannot be published to, or "" when it can (MQTT 3.1.1 section 4.7)."""
    if not topic:
        return "must not be empty"
    if any(c in topic for c in "#+") or has_control_chars(topic):
        return "must not contain MQTT wildcards (# +) or control characters"
    if topic.startswith("$"):
        return "must not start with $ (reserved for the broker, which drops such messages)"
    if "" in topic.split("/"):
        return "must not have an empty level (a leading, trailing or double /)"
    if too_long(topic):
        return f"must be shorter: {too_long(topic)}"
    return ""


def same_path(a: str, b: str) -> bool:
    """Whether two configured paths name one file (as written; symlinks are not followed)."""
    return bool(a) and os.path.normpath(os.path.abspath(a)) == os.path.normpath(os.path.abspath(b))


@dataclass(frozen=True)
class StdoutSinkConfig:
    enabled: bool = setting(False, "print each record on standard output")
    format: Literal["json", "text"] = setting(
        "json", "json: the record as one JSON line; text: one line for people (source: answer, score, top label)"
    )


@dataclass(frozen=True)
class FileSinkConfig:
    enabled: bool = setting(True, "append each record as one JSON line to a file")
    path: str = setting("/var/lib/mnv1-edge/results.jsonl", "the JSON Lines file")
    max_bytes: int = setting(10_000_000, "rotate when the file would exceed this size; 0 = never rotate", ge=0)
    keep: int = setting(5, "rotated files kept (results.jsonl.1 … .N)", ge=0, le=1000)
    fsync: Literal["always", "interval", "never"] = setting("interval", "when to fsync: every record, every fsync_interval_s, or leave it to the OS")
    fsync_interval_s: float = setting(5.0, "seconds between fsyncs (fsync = interval)", gt=0)

    def check(self, need: Need) -> None:
        need(not self.enabled or bool(self.path), "path", "required when the file sink is enabled")
        # A cap below a few hundred records rotates on nearly every record and, with a small `keep`,
        # silently deletes almost everything it was given.
        need(self.max_bytes == 0 or self.max_bytes >= 65536, "max_bytes", f"must be 0 (never rotate) or at least 65536, got {self.max_bytes}")


@dataclass(frozen=True)
class TlsConfig:
    enabled: bool = setting(False, "connect with TLS")
    ca_file: str = setting("", "CA bundle to verify the broker; empty = the system's CAs")
    cert_file: str = setting("", "client certificate (PEM) for mutual TLS")
    key_file: str = setting("", "client key (PEM) for mutual TLS")
    insecure: bool = setting(False, "skip broker hostname checking (never in production)")

    def check(self, need: Need) -> None:
        need(not (self.cert_file and not self.key_file), "key_file", "required with tls.cert_file")


@dataclass(frozen=True)
class HomeAssistantConfig:
    enabled: bool = setting(False, "publish Home Assistant MQTT discovery for a label and a score sensor")
    discovery_prefix: str = setting("homeassistant", "Home Assistant's discovery prefix")

    def check(self, need: Need) -> None:
        problem = topic_problem(self.discovery_prefix)
        need(not problem, "discovery_prefix", problem)


@dataclass(frozen=True)
class SpoolConfig:
    path: str = setting("/var/lib/mnv1-edge/spool", "where unacknowledged records wait (survives restarts)")
    max_bytes: int = setting(50_000_000, "spool size cap; the oldest records are dropped (and counted) beyond it", ge=64 * 1024)
    max_age_s: float = setting(7 * 86400.0, "records older than this are dropped (and counted); 0 = no age limit", ge=0)
    sync_interval_s: float = setting(
        5.0, "fdatasync the spool this often (a power cut loses at most this many seconds of unsent records); 0 = OS", ge=0
    )


@dataclass(frozen=True)
class MqttSinkConfig:
    enabled: bool = setting(False, "publish records to an MQTT broker")
    host: str = setting("127.0.0.1", "broker host")
    port: int = setting(1883, "broker port (8883 is usual with TLS)", ge=1, le=65535)
    keepalive_s: int = setting(30, "MQTT keepalive (the protocol allows at most 65535)", ge=1, le=65535)
    client_id: str = setting(
        "", "empty = mnv1-edge-<device_id>-<instance>, a random instance per run (one id for two daemons: each takes the connection from the other)"
    )
    topic_prefix: str = setting("", "empty = mnv1-edge/<device_id>/")
    qos: int = setting(1, "QoS of classification messages (0, 1 or 2)")
    retain: bool = setting(False, "retain the latest classification")
    username: str = setting("", "username; the password comes from password_file or $MNV1_EDGE_MQTT_PASSWORD")
    username_file: str = setting("", "read the username from this file instead")
    password_file: str = setting("", "read the password from this file (mode 0600); never put it in this config")
    stats_interval_s: float = setting(60.0, "publish stats every this many seconds; 0 = never", ge=0)
    reconnect_max_s: float = setting(60.0, "cap of the exponential reconnect back-off", ge=1)
    max_inflight: int = setting(
        32, "records published and not yet acknowledged at a time; on reconnect they are re-sent from the spool in order", ge=1, le=65535
    )
    close_timeout_s: float = setting(
        5.0, "at stop, wait at most this long for the backlog to be acknowledged before publishing offline", ge=0, le=3600
    )
    tls: TlsConfig = section(TlsConfig, "TLS settings")
    homeassistant: HomeAssistantConfig = section(HomeAssistantConfig, "Home Assistant discovery")
    spool: SpoolConfig = section(SpoolConfig, "the durable spool")

    def prefix_for(self, device: str) -> str:
        """The prefix every topic of the device is under (ends with /)."""
        prefix = self.topic_prefix or f"mnv1-edge/{device}/"
        return prefix if prefix.endswith("/") else prefix + "/"

    def names(self, device: str) -> dict[str, str]:
        """The longest topic and the client id this device uses, by the key that sets them
        (empty topic_prefix and client_id derive both from device_id): for the length check."""
        topic_key = "sinks.mqtt.topic_prefix" if self.topic_prefix else "device_id"
        names = {topic_key: self.prefix_for(device) + "classification"}
        if self.client_id:
            names["sinks.mqtt.client_id"] = self.client_id
        elif len(f"mnv1-edge-{device}-{'0' * 12}") > len(names.get("device_id", "")):  # the instance: edge/sinks/mqtt/clash.py
            names["device_id"] = f"mnv1-edge-{device}-{'0' * 12}"
        return names

    def check(self, need: Need) -> None:
        need(
            not any(c in self.topic_prefix for c in "#+") and not has_control_chars(self.topic_prefix),
            "topic_prefix",
            "must not contain MQTT wildcards (# +) or control characters",
        )
        need(not self.topic_prefix.startswith("$"), "topic_prefix", "must not start with $ (reserved for the broker)")
        need(self.qos in (0, 1, 2), "qos", f"expected 0, 1 or 2, got {self.qos}")
        need(bool(self.host.strip()) and not has_control_chars(self.host), "host", "expected a host name or address")
        need(not (self.username and self.username_file), "username_file", "give username or username_file, not both")
        need(
            not any(c in self.client_id for c in "#+") and not has_control_chars(self.client_id),
            "client_id",
            "must not contain # + or control characters",
        )
        need(not self.enabled or bool(self.spool.path), "spool.path", "required when the MQTT sink is enabled")


@dataclass(frozen=True)
class PrometheusSinkConfig:
    enabled: bool = setting(False, "write metrics for node_exporter's textfile collector at every stats report (no listening port)")
    path: str = setting(
        "/var/lib/prometheus/node-exporter/mnv1-edge.prom",
        "the .prom file, replaced atomically; its folder must be node_exporter's --collector.textfile.directory",
    )

    def check(self, need: Need) -> None:
        need(not self.enabled or self.path.endswith(".prom"), "path", "must end in .prom (node_exporter reads only those)")


@dataclass(frozen=True)
class SinksConfig:
    stdout: StdoutSinkConfig = section(StdoutSinkConfig, "the stdout sink")
    file: FileSinkConfig = section(FileSinkConfig, "the file sink")
    mqtt: MqttSinkConfig = section(MqttSinkConfig, "the MQTT sink")
    prometheus: PrometheusSinkConfig = section(PrometheusSinkConfig, "Prometheus metrics (node_exporter textfile collector)")

    def check(self, need: Need) -> None:
        need(self.stdout.enabled or self.file.enabled or self.mqtt.enabled, "", "enable at least one sink (stdout, file or mqtt)")
        both = self.file.enabled and self.mqtt.enabled
        need(
            not (both and same_path(self.file.path, self.mqtt.spool.path)),
            "mqtt.spool.path",
            f"is sinks.file.path ({self.file.path}): the spool is a folder of its own; give it another path",
        )
