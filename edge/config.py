"""Configuration: TOML file → dict → frozen dataclasses; unknown keys and wrong types rejected by path."""

# Loading (file → dict) is separate from parsing (dict → Config) so tests build configs from dicts.
# Every field has a default and a description (the `doc` metadata); `examples/config.toml` documents
# them all and a test keeps it in step with this file.

from __future__ import annotations

import dataclasses
import socket
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from edge.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 (older Pi OS images)
    import tomli as tomllib

DEFAULT_PATH = Path("/etc/mnv1-edge/config.toml")


def _f(default: Any, doc: str) -> Any:
    if isinstance(default, (list, dict)):
        raise TypeError("use tuples for sequence defaults")
    return field(default=default, metadata={"doc": doc})


def _sub(cls: type, doc: str) -> Any:
    return field(default_factory=cls, metadata={"doc": doc})


@dataclass(frozen=True)
class ModelConfig:
    path: str = _f("/opt/mnv1-edge/models/mobilenet_v1_0.25_128_int8.tflite", "converted model; its manifest MODEL.json must sit beside it")
    sha256: str = _f("", "pin the model file's sha256; empty = accept any model whose manifest matches")
    threads: int = _f(1, "interpreter threads (1 is usually fastest per watt for this 14 M-MAC model)")
    self_test: bool = _f(True, "classify the manifest's reference image at start and refuse to run if it differs")
    require_xnnpack: bool = _f(
        True,
        "refuse to run unless XNNPACK takes every convolution; false lets the legacy tflite-runtime 2.14 "
        "(no int8 XNNPACK) run on TFLite's built-in kernels, several times slower, with a warning",
    )


@dataclass(frozen=True)
class ImagesSourceConfig:
    path: str = _f("", "a folder, a glob (e.g. /srv/in/*.jpg) or one image file")
    loop: bool = _f(False, "start again at the first image after the last one")
    draft: bool = _f(True, "decode JPEGs at reduced scale in the DCT domain (much faster, same input)")


@dataclass(frozen=True)
class VideoSourceConfig:
    url: str = _f("", "a video file path, or an rtsp:// / http:// stream URL")
    loop: bool = _f(False, "restart a file at its end (streams always reconnect)")
    reconnect_max_s: float = _f(30.0, "cap of the exponential back-off between stream reconnects")


@dataclass(frozen=True)
class V4l2SourceConfig:
    device: str = _f("/dev/video0", "V4L2 device node of the USB webcam")
    width: int = _f(0, "capture width; 0 = the smallest native size whose centre crop covers the model input")
    height: int = _f(0, "capture height; 0 = chosen with width")
    input_format: Literal["auto", "yuyv422", "mjpeg"] = _f("auto", "auto = raw YUYV when a small enough size exists (no decoding), else MJPEG")
    lowres: int = _f(0, "MJPEG decode at 1/2^lowres scale (0-3); chosen automatically when width and height are 0")
    framerate: float = _f(15.0, "capture frame rate requested from the camera (capped at source.max_fps when that is set)")


@dataclass(frozen=True)
class Picamera2SourceConfig:
    camera: int = _f(0, "camera number for Picamera2(camera_num)")
    main_size: tuple[int, int] = _f((640, 480), "main stream size; only the lores stream is read")
    lores_size: tuple[int, int] = _f(
        (128, 128), "lores stream size; the ISP crops (ScalerCrop) and scales to it for free: 128x128 = the model input, no resize"
    )
    lores_format: Literal["auto", "YUV420", "RGB888", "BGR888"] = _f(
        "auto", "auto = BGR888 on Pi 5 (R,G,B bytes: no conversion at all), YUV420 on Pi 4 and earlier"
    )
    framerate: float = _f(10.0, "sensor frame rate (FrameRate control)")
    exposure_time_us: int = _f(0, "fixed exposure in microseconds; 0 = automatic exposure")
    analogue_gain: float = _f(0.0, "fixed analogue gain; 0 = automatic")
    reopen_max_s: float = _f(30.0, "cap of the exponential back-off between camera reopen attempts")


@dataclass(frozen=True)
class SyntheticSourceConfig:
    frames: int = _f(0, "number of frames, 0 = endless")
    seed: int = _f(0, "random seed: the same seed gives the same frames")
    fps: float = _f(0.0, "frame rate, 0 = as fast as they are consumed")


@dataclass(frozen=True)
class SourceConfig:
    kind: Literal["picamera2", "v4l2", "video", "images", "synthetic"] = _f("picamera2", "which source to read frames from")
    crop_fraction: float = _f(0.875, "central part of each dimension kept before resizing (0.875 = as the model was evaluated)")
    max_fps: float = _f(0.0, "cap on classified frames per second to save CPU; 0 = no cap")
    stall_timeout_s: float = _f(10.0, "no frame for this long = source stalled (stops the systemd watchdog)")
    frozen_threshold: float = _f(
        0.0,
        "live sources: frames whose mean absolute difference (0-255 levels, sparse grid) from the last changed frame stays at or below this "
        "for stall_timeout_s are frozen and the source is reopened; 0 = only identical frames "
        "(H.264 streams of a still scene repeat frames exactly); negative = off",
    )
    images: ImagesSourceConfig = _sub(ImagesSourceConfig, "the images source")
    video: VideoSourceConfig = _sub(VideoSourceConfig, "the video source")
    v4l2: V4l2SourceConfig = _sub(V4l2SourceConfig, "the v4l2 source")
    picamera2: Picamera2SourceConfig = _sub(Picamera2SourceConfig, "the picamera2 source")
    synthetic: SyntheticSourceConfig = _sub(SyntheticSourceConfig, "the synthetic source")


@dataclass(frozen=True)
class ResultsConfig:
    top_k: int = _f(5, "how many classes each record lists")
    threshold: float = _f(0.0, "drop classes scoring below this from top_k")
    smoothing: Literal["none", "ema", "vote"] = _f("none", "temporal smoothing of the probabilities")
    ema_alpha: float = _f(0.5, "weight of the newest frame in the EMA (smoothing = ema)")
    vote_window: int = _f(5, "frames in the N-of-M vote window (smoothing = vote)")
    vote_min: int = _f(3, "votes a label needs in the window to become the top label (smoothing = vote)")
    hysteresis: float = _f(0.0, "a new top label must beat the current one by this margin to replace it")
    publish: Literal["every", "change", "interval"] = _f("every", "publish every frame, on a change of top label, or at most every interval_s")
    interval_s: float = _f(1.0, "minimum seconds between records (publish = interval)")
    heartbeat_s: float = _f(60.0, "with publish = change/interval: publish the current result at least this often; 0 = never")


@dataclass(frozen=True)
class StdoutSinkConfig:
    enabled: bool = _f(False, "print each record as one JSON line on standard output")


@dataclass(frozen=True)
class FileSinkConfig:
    enabled: bool = _f(True, "append each record as one JSON line to a file")
    path: str = _f("/var/lib/mnv1-edge/results.jsonl", "the JSON Lines file")
    max_bytes: int = _f(10_000_000, "rotate when the file would exceed this size; 0 = never rotate")
    keep: int = _f(5, "rotated files kept (results.jsonl.1 … .N)")
    fsync: Literal["always", "interval", "never"] = _f("interval", "when to fsync: every record, every fsync_interval_s, or leave it to the OS")
    fsync_interval_s: float = _f(5.0, "seconds between fsyncs (fsync = interval)")


@dataclass(frozen=True)
class TlsConfig:
    enabled: bool = _f(False, "connect with TLS")
    ca_file: str = _f("", "CA bundle to verify the broker; empty = the system's CAs")
    cert_file: str = _f("", "client certificate (PEM) for mutual TLS")
    key_file: str = _f("", "client key (PEM) for mutual TLS")
    insecure: bool = _f(False, "skip broker hostname checking (never in production)")


@dataclass(frozen=True)
class HomeAssistantConfig:
    enabled: bool = _f(False, "publish Home Assistant MQTT discovery for a label and a score sensor")
    discovery_prefix: str = _f("homeassistant", "Home Assistant's discovery prefix")


@dataclass(frozen=True)
class SpoolConfig:
    path: str = _f("/var/lib/mnv1-edge/spool", "where unacknowledged records wait (survives restarts)")
    max_bytes: int = _f(50_000_000, "spool size cap; the oldest records are dropped (and counted) beyond it")
    max_age_s: float = _f(7 * 86400.0, "records older than this are dropped (and counted); 0 = no age limit")
    sync_interval_s: float = _f(5.0, "fdatasync the spool this often (a power cut loses at most this many seconds of unsent records); 0 = OS")


@dataclass(frozen=True)
class MqttSinkConfig:
    enabled: bool = _f(False, "publish records to an MQTT broker")
    host: str = _f("127.0.0.1", "broker host")
    port: int = _f(1883, "broker port (8883 is usual with TLS)")
    keepalive_s: int = _f(30, "MQTT keepalive")
    client_id: str = _f("", "empty = mnv1-edge-<device_id>")
    topic_prefix: str = _f("", "empty = mnv1-edge/<device_id>/")
    qos: int = _f(1, "QoS of classification messages (0, 1 or 2)")
    retain: bool = _f(False, "retain the latest classification")
    username: str = _f("", "username; the password comes from password_file or $MNV1_EDGE_MQTT_PASSWORD")
    username_file: str = _f("", "read the username from this file instead")
    password_file: str = _f("", "read the password from this file (mode 0600); never put it in this config")
    stats_interval_s: float = _f(60.0, "publish stats every this many seconds; 0 = never")
    reconnect_max_s: float = _f(60.0, "cap of the exponential reconnect back-off")
    max_inflight: int = _f(32, "records published and not yet acknowledged at a time; on reconnect they are re-sent from the spool in order")
    close_timeout_s: float = _f(5.0, "at stop, wait at most this long for the backlog to be acknowledged before publishing offline")
    tls: TlsConfig = _sub(TlsConfig, "TLS settings")
    homeassistant: HomeAssistantConfig = _sub(HomeAssistantConfig, "Home Assistant discovery")
    spool: SpoolConfig = _sub(SpoolConfig, "the durable spool")


@dataclass(frozen=True)
class SinksConfig:
    stdout: StdoutSinkConfig = _sub(StdoutSinkConfig, "the stdout sink")
    file: FileSinkConfig = _sub(FileSinkConfig, "the file sink")
    mqtt: MqttSinkConfig = _sub(MqttSinkConfig, "the MQTT sink")


@dataclass(frozen=True)
class Config:
    device_id: str = _f("", "device identity in records and topics; empty = the host name")
    state_dir: str = _f("/var/lib/mnv1-edge", "persistent state (the record sequence number)")
    log_level: Literal["debug", "info", "warning", "error"] = _f("info", "minimum log level")
    stats_interval_s: float = _f(60.0, "log a stats line every this many seconds; 0 = never")
    model: ModelConfig = _sub(ModelConfig, "the model")
    source: SourceConfig = _sub(SourceConfig, "the frame source")
    results: ResultsConfig = _sub(ResultsConfig, "what is published, and how often")
    sinks: SinksConfig = _sub(SinksConfig, "where results go")

    @property
    def device(self) -> str:
        return self.device_id or socket.gethostname()


_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def parse(data: dict[str, Any], cls: type[Any] = Config, path: str = "") -> Any:
    """Build the dataclass `cls` from a dict, naming the dotted key path of any error."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path or '<root>'}: expected a table, got {_describe(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{_join(path, unknown[0])}: unknown key (valid keys: {', '.join(sorted(fields))})")
    kwargs = {name: _convert(value, hints[name], _join(path, name)) for name, value in data.items()}
    config = cls(**kwargs)
    _check(config, path)
    return config


def _convert(value: Any, hint: Any, path: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return parse(value, hint, path)  # type: ignore[arg-type]
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ConfigError(f"{path}: expected one of {', '.join(map(repr, choices))}, got {value!r}")
        return value
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, list) or len(value) != len(args):
            raise ConfigError(f"{path}: expected a list of {len(args)} values, got {_describe(value)}")
        return tuple(_convert(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if origin in (typing.Union, types.UnionType):
        raise TypeError(f"unsupported config type {hint}")
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in _TYPE_NAMES and (type(value) is not hint):
        raise ConfigError(f"{path}: expected {_TYPE_NAMES[hint]}, got {_describe(value)}")
    return value


def _check(config: Any, path: str) -> None:
    """Cross-field and range checks, each naming the key."""

    def need(ok: bool, key: str, message: str) -> None:
        if not ok:
            raise ConfigError(f"{_join(path, key)}: {message}")

    if isinstance(config, ModelConfig):
        need(config.threads >= 1, "threads", "must be at least 1")
        need(not config.sha256 or len(config.sha256) == 64, "sha256", "expected 64 hex digits")
    elif isinstance(config, SourceConfig):
        need(0.1 <= config.crop_fraction <= 1.0, "crop_fraction", "must be between 0.1 and 1.0")
        need(config.max_fps >= 0, "max_fps", "must not be negative")
        need(config.stall_timeout_s > 0, "stall_timeout_s", "must be positive")
        # A file source reads its next frame only once the last was taken: a cap slower than the
        # stall timeout would look like a stalled camera and stop the watchdog.
        need(config.max_fps == 0 or 1 / config.max_fps < config.stall_timeout_s, "max_fps", "1/max_fps must be shorter than stall_timeout_s")
        need(config.kind != "images" or bool(config.images.path), "images.path", 'required when kind = "images"')
        need(config.kind != "video" or bool(config.video.url), "video.url", 'required when kind = "video"')
        need(0 <= config.v4l2.lowres <= 3, "v4l2.lowres", "must be between 0 and 3")
        need((config.v4l2.width == 0) == (config.v4l2.height == 0), "v4l2.width", "set width and height together (or both 0 = automatic)")
    elif isinstance(config, ResultsConfig):
        need(1 <= config.top_k <= 1001, "top_k", "must be between 1 and 1001")
        need(0 < config.ema_alpha <= 1, "ema_alpha", "must be in (0, 1]")
        need(1 <= config.vote_min <= config.vote_window, "vote_min", "must be between 1 and vote_window")
        need(config.interval_s > 0, "interval_s", "must be positive")
    elif isinstance(config, FileSinkConfig):
        need(not config.enabled or bool(config.path), "path", "required when the file sink is enabled")
        need(config.keep >= 0 and config.max_bytes >= 0, "max_bytes", "max_bytes and keep must not be negative")
    elif isinstance(config, MqttSinkConfig):
        need(config.qos in (0, 1, 2), "qos", f"expected 0, 1 or 2, got {config.qos}")
        need(0 < config.port < 65536, "port", f"expected a TCP port (1-65535), got {config.port}")
        need(not any(c in config.topic_prefix for c in "#+\0"), "topic_prefix", "must not contain MQTT wildcards (# +) or NUL")
        need(not (config.username and config.username_file), "username_file", "give username or username_file, not both")
        need(not (config.tls.cert_file and not config.tls.key_file), "tls.key_file", "required with tls.cert_file")
        need(not config.topic_prefix.startswith("$"), "topic_prefix", "must not start with $ (reserved for the broker)")
        need(not any(c in config.client_id for c in "#+\0"), "client_id", "must not contain # + or NUL")
        need(config.keepalive_s >= 1, "keepalive_s", "must be at least 1")
        need(1 <= config.max_inflight <= 65535, "max_inflight", "must be between 1 and 65535")
        need(config.reconnect_max_s >= 1, "reconnect_max_s", "must be at least 1")
        need(config.close_timeout_s >= 0, "close_timeout_s", "must not be negative")
        need(config.stats_interval_s >= 0, "stats_interval_s", "must not be negative")
        prefix = config.homeassistant.discovery_prefix
        need(bool(prefix) and not any(c in prefix for c in "#+\0"), "homeassistant.discovery_prefix", "must be a topic without wildcards (# +)")
        need(config.spool.max_bytes >= 64 * 1024, "spool.max_bytes", "must be at least 65536")
        need(config.spool.max_age_s >= 0, "spool.max_age_s", "must not be negative")
        need(config.spool.sync_interval_s >= 0, "spool.sync_interval_s", "must not be negative")
        need(not config.enabled or bool(config.spool.path), "spool.path", "required when the MQTT sink is enabled")
    elif isinstance(config, Config):
        sinks = config.sinks
        need(sinks.stdout.enabled or sinks.file.enabled or sinks.mqtt.enabled, "sinks", "enable at least one sink (stdout, file or mqtt)")
        need(not any(c in config.device_id for c in "/#+\0 "), "device_id", "must not contain / # + spaces or NUL")


def load(path: Path) -> Config:
    """Read and parse a TOML config file."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: config file not found (copy examples/config.toml there)") from exc
    except PermissionError as exc:
        raise ConfigError(f"{path}: permission denied reading the config file") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
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
    """(dotted key, default, description) for every leaf setting: for docs and the example test."""
    out: list[tuple[str, Any, str]] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = _join(prefix, f.name)
        if dataclasses.is_dataclass(hints[f.name]):
            out.extend(documented_fields(hints[f.name], key))
        else:
            out.append((key, f.default, f.metadata["doc"]))
    return out


def example_toml() -> str:
    """A complete, commented config with every key at its default (examples/config.toml)."""
    lines = [
        "# mnv1-edge configuration: every key, at its default, with what it does.",
        "# Install as /etc/mnv1-edge/config.toml; check with `mnv1-edge check-config PATH`.",
    ]
    _emit(Config, "", lines)
    return "\n".join(lines) + "\n"


def _emit(cls: type[Any], prefix: str, lines: list[str]) -> None:
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    for f in fields:
        if not dataclasses.is_dataclass(hints[f.name]):
            lines.append(f"# {f.metadata['doc']}")
            lines.append(f"{f.name} = {_toml_value(f.default)}")
    for f in fields:
        if dataclasses.is_dataclass(hints[f.name]):
            key = _join(prefix, f.name)
            lines.extend(["", f"[{key}]  # {f.metadata['doc']}"])
            _emit(hints[f.name], key, lines)


def to_toml(data: dict[str, Any], prefix: str = "") -> str:
    """Write a config dict (scalars, lists, nested tables) as TOML: for generated configs."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for k, v in data.items():
        if isinstance(v, dict):
            name = _join(prefix, k)
            lines += [f"[{name}]", to_toml(v, name)]
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _describe(value: Any) -> str:
    kinds = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a table"}
    return f"{kinds.get(type(value), type(value).__name__)} {value!r}" if not isinstance(value, dict) else "a table"
