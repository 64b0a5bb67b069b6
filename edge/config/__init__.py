"""Configuration: TOML file → dict → frozen dataclasses, one module per section, checked by dotted key."""

# Every field has its default, description and range on the field (see fields.py); cross-field checks
# are each class's `check` method. `examples/config.toml` documents every key and a test keeps it in
# step with these classes.

from __future__ import annotations

import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from edge.config import document, fields
from edge.config.document import to_toml
from edge.config.fields import Need, section, setting
from edge.config.groups import GroupsTable, check_groups, groups_table
from edge.config.model import ModelConfig
from edge.config.results import ResultsConfig
from edge.config.sinks import (
    FileSinkConfig,
    HomeAssistantConfig,
    MqttSinkConfig,
    PrometheusSinkConfig,
    SinksConfig,
    SpoolConfig,
    StdoutSinkConfig,
    TlsConfig,
    has_control_chars,
    same_path,
    too_long,
)
from edge.config.snapshots import SnapshotsConfig
from edge.config.source import (
    ImagesSourceConfig,
    Picamera2SourceConfig,
    SourceConfig,
    SyntheticSourceConfig,
    V4l2SourceConfig,
    VideoSourceConfig,
)
from edge.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 (older Pi OS images)
    import tomli as tomllib

__all__ = [
    "DEFAULT_PATH",
    "Config",
    "ConfigError",
    "FileSinkConfig",
    "HomeAssistantConfig",
    "ImagesSourceConfig",
    "ModelConfig",
    "MqttSinkConfig",
    "Picamera2SourceConfig",
    "PrometheusSinkConfig",
    "ResultsConfig",
    "SinksConfig",
    "SnapshotsConfig",
    "SourceConfig",
    "SpoolConfig",
    "StdoutSinkConfig",
    "SyntheticSourceConfig",
    "TlsConfig",
    "V4l2SourceConfig",
    "VideoSourceConfig",
    "documented_fields",
    "example_toml",
    "load",
    "parse",
    "to_toml",
]

DEFAULT_PATH = Path("/etc/mnv1-edge/config.toml")  # the unit's --config (systemd/mnv1-edge.service)
SERVICE_USER = "mnv1-edge"  # the unit's User=, made by systemd/mnv1-edge.sysusers


@dataclass(frozen=True)
class Config:
    device_id: str = setting("", "device identity in records and topics; empty = the host name")
    state_dir: str = setting("/var/lib/mnv1-edge", "persistent state (the record sequence number)")
    log_level: Literal["debug", "info", "warning", "error"] = setting("info", "minimum log level")
    stats_interval_s: float = setting(60.0, "log a stats line every this many seconds; 0 = never", ge=0)
    model: ModelConfig = section(ModelConfig, "the model")
    source: SourceConfig = section(SourceConfig, "the frame source")
    results: ResultsConfig = section(ResultsConfig, "what is published, and how often")
    sinks: SinksConfig = section(SinksConfig, "where results go")
    snapshots: SnapshotsConfig = section(SnapshotsConfig, "evidence snapshots (off by default: SD-card wear and privacy; docs/guide/snapshots.md)")
    groups: GroupsTable = groups_table()

    @property
    def device(self) -> str:
        return self.device_id or socket.gethostname()

    def check(self, need: Need) -> None:
        bad = any(c in self.device_id for c in "/#+ ") or has_control_chars(self.device_id)
        need(not bad, "device_id", "must not contain / # + spaces or control characters")
        if self.sinks.mqtt.enabled:
            for key, name in self.sinks.mqtt.names(self.device).items():
                need(not too_long(name), key, f"too long: it makes the MQTT name {name[:40]}… {too_long(name)}; shorten it")
        need(bool(self.state_dir.strip()), "state_dir", "must not be empty (it would be the current directory)")
        need(
            not (self.sinks.prometheus.enabled and self.stats_interval_s == 0),
            "stats_interval_s",
            "must be above 0 with sinks.prometheus.enabled: the .prom file is written at every stats report",
        )
        need(
            not (self.snapshots.enabled and self.sinks.file.enabled and same_path(self.snapshots.path, self.sinks.file.path)),
            "snapshots.path",
            f"is sinks.file.path ({self.sinks.file.path}): snapshots need a folder of their own",
        )
        check_groups(self.groups, self.results.groups, need)


def parse(data: dict[str, Any], cls: type[Any] = Config, path: str = "") -> Any:
    """Build `cls` (the whole Config by default) from a dict, naming the dotted key of any error."""
    return fields.parse(data, cls, path)


def load(path: Path) -> Config:
    """Read and parse a TOML config file."""
    try:
        # A UTF-8 byte order mark (Windows editors write one) is not TOML; accept it rather than
        # fail with "Invalid statement (at line 1, column 1)".
        data = tomllib.loads(Path(path).read_bytes().removeprefix(b"\xef\xbb\xbf").decode("utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: config file not found (copy examples/config.toml there)") from exc
    except PermissionError as exc:
        raise ConfigError(f"{path}: permission denied reading the config file") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    except RecursionError as exc:  # tomllib parses nested arrays and tables recursively
        raise ConfigError(f"{path}: invalid TOML: arrays or tables nested too deeply") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save the config as UTF-8") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror})") from exc
    try:
        config: Config = parse(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return config


def documented_fields(cls: type[Any] = Config, prefix: str = "") -> list[tuple[str, Any, str]]:
    """(dotted key, default, description) for every leaf setting."""
    return document.documented_fields(cls, prefix)


def example_toml() -> str:
    """A complete, commented config with every key at its default (examples/config.toml)."""
    return document.example_toml(Config)
