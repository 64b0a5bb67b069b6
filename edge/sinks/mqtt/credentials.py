"""MQTT credentials from files or the environment: never logged, never on a command line."""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from edge.config import MqttSinkConfig
from edge.errors import SinkError

log = logging.getLogger(__name__)

PASSWORD_ENV = "MNV1_EDGE_MQTT_PASSWORD"


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str | None

    def __repr__(self) -> str:  # keep the password out of tracebacks and debug logs
        return f"Credentials(username={self.username!r}, password={'***' if self.password else None})"


def world_readable(path: Path) -> bool:
    try:
        return bool(path.stat().st_mode & stat.S_IROTH)
    except OSError:
        return False


def read_secret(path: Path, what: str) -> str:
    """The file's text without its trailing newline; warns when any user can read it."""
    key = f"sinks.mqtt.{what.replace(' ', '_')}_file"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SinkError(f"{path}: cannot read the {what} ({exc.strerror}); check {key}") from exc
    except ValueError as exc:  # UnicodeDecodeError: not a text file, or another encoding
        raise SinkError(f"{path}: the {what} is not UTF-8 text; check {key} (save the file as UTF-8)") from exc
    if world_readable(path):
        log.warning("%s: the MQTT %s is readable by every user; run: chmod 600 %s", path, what, path)
    return text.rstrip("\r\n")


def mqtt_credentials(config: MqttSinkConfig, config_path: Path | None = None) -> Credentials | None:
    """Username from the config or username_file; password from password_file, else $MNV1_EDGE_MQTT_PASSWORD."""
    username = read_secret(Path(config.username_file), "username") if config.username_file else config.username
    if config.password_file:
        password: str | None = read_secret(Path(config.password_file), "password")
    else:
        password = os.environ.get(PASSWORD_ENV) or None
    if not username:
        if password:
            log.warning("an MQTT password is set but no username (sinks.mqtt.username); connecting without credentials")
        return None
    if config_path is not None and config.username and world_readable(config_path):
        log.warning("%s: holds MQTT credentials (sinks.mqtt.username) and is readable by every user; run: chmod 640 %s", config_path, config_path)
    return Credentials(username, password)
