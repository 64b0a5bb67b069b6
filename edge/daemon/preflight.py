"""What `run` will need from the machine, checked without running (`check-config`, and a reload first): files, folders, devices."""

# `check-config` used to stop at parsing, so a config whose model or password file is missing
# passed "OK" and `run` failed later under systemd. These checks touch nothing: they read the files
# `run` reads and look at the folders it writes, and list what they could not check (a camera is
# opened only by `run`; permissions are the checking user's, not necessarily the service's).

from __future__ import annotations

import os
import pwd
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from edge.config import SERVICE_USER, Config
from edge.daemon import statelock
from edge.errors import EdgeError
from edge.fsutil import blocking_file

if TYPE_CHECKING:
    from edge.config import TlsConfig


@dataclass
class Preflight:
    problems: list[str] = field(default_factory=list)  # "dotted.key: what is wrong"
    checked: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def preflight(config: Config) -> Preflight:
    result = Preflight()
    _model(config, result)
    result.checked.append("state_dir")
    _writable_dir(Path(config.state_dir), "state_dir", result)
    _state_lock(Path(config.state_dir), result)
    _source(config, result)
    _sinks(config, result)
    if config.snapshots.enabled:
        result.checked.append("snapshots.path")
        _writable_dir(Path(config.snapshots.path), "snapshots.path", result)
    _relative_paths(config, result)
    _unused_groups(config, result)
    _who(result)
    return result


def _unused_groups(config: Config, result: Preflight) -> None:
    from edge.model.groups import unused

    for name in unused(config.groups, config.results.groups):
        result.notes.append(f"groups.{name}: defined, but results.groups does not name it (nor a group it names): unused")


def _model(config: Config, result: Preflight) -> None:
    from edge.fsutil import sha256_file
    from edge.model.manifest import load_manifest

    path = Path(config.model.path)
    result.checked.append("model.path and its manifest")
    if not _readable_file(path, "model.path", result):
        return
    try:
        actual = sha256_file(path)
        pin = config.model.sha256.lower()
        if pin and pin != actual:
            result.problems.append(f"model.sha256: {path} has sha256 {actual}, not the pinned {pin}")
        manifest = load_manifest(path, actual)
        if config.model.self_test:
            if manifest.self_test is None:
                result.problems.append(f"model.self_test: {path}.json has no self-test image; re-run `mnv1-edge convert`")
            else:
                manifest.self_test.frame(f"{path}.json")
    except EdgeError as exc:
        result.problems.append(f"model.path: {exc}")
    result.skipped.append("loading the model into the TFLite runtime and its self-test (`mnv1-edge info --config PATH` does)")


def _source(config: Config, result: Preflight) -> None:
    src = config.source
    if src.kind == "images":
        from edge.sources.images import resolve

        result.checked.append("source.images.path")
        try:
            if not resolve(src.images.path):
                result.problems.append(f"source.images.path: no images in {src.images.path}")
        except EdgeError as exc:
            result.problems.append(str(exc))
    elif src.kind == "video" and "://" not in src.video.url:
        result.checked.append("source.video.url")
        _readable_file(Path(src.video.url), "source.video.url", result)
    elif src.kind == "v4l2":
        result.checked.append("source.v4l2.device")
        dev = Path(src.v4l2.device)
        try:
            if not stat.S_ISCHR(dev.stat().st_mode):
                result.problems.append(f"source.v4l2.device: {dev} is not a device node")
            elif not os.access(dev, os.R_OK | os.W_OK):
                result.problems.append(f"source.v4l2.device: {dev}: permission denied (the service user needs the video group)")
        except OSError as exc:
            result.problems.append(f"source.v4l2.device: {dev}: {exc.strerror}")
        result.skipped.append("opening the V4L2 camera (only `run` does)")
    elif src.kind == "video":
        result.skipped.append(f"connecting to the stream {src.video.url} (only `run` does)")
    elif src.kind == "picamera2":
        import importlib.util

        result.checked.append("picamera2 importable")
        if importlib.util.find_spec("picamera2") is None:
            result.problems.append(
                'source.kind: "picamera2" but the picamera2 library is not importable (sudo apt install python3-picamera2, '
                "and a venv made with --system-site-packages)"
            )
        result.skipped.append("opening the Pi camera (only `run` does; `rpicam-hello --list-cameras` lists them)")


def _sinks(config: Config, result: Preflight) -> None:
    sinks = config.sinks
    if sinks.file.enabled:
        result.checked.append("sinks.file.path")
        path = Path(sinks.file.path)
        if path.is_dir():
            result.problems.append(f"sinks.file.path: {path} is a folder; give a file path")
        elif path.exists() and not os.access(path, os.W_OK):
            result.problems.append(f"sinks.file.path: {path}: permission denied (not writable)")
        else:
            _writable_dir(path.parent, "sinks.file.path", result)
    if sinks.prometheus.enabled:
        # The sink does not create the folder (node_exporter's textfile directory must exist).
        result.checked.append("sinks.prometheus.path")
        try:
            from edge.fsutil import check_writable

            check_writable(Path(sinks.prometheus.path), "Prometheus metrics")
        except EdgeError as exc:
            result.problems.append(f"sinks.prometheus.path: {exc}")
    mqtt = sinks.mqtt
    if not mqtt.enabled:
        return
    result.checked.append("sinks.mqtt files (password, username, TLS) and spool.path")
    for key, name in (("password_file", mqtt.password_file), ("username_file", mqtt.username_file)):
        if name:
            _readable_file(Path(name), f"sinks.mqtt.{key}", result)
    if mqtt.tls.enabled:
        tls = mqtt.tls
        files = (("ca_file", tls.ca_file), ("cert_file", tls.cert_file), ("key_file", tls.key_file))
        if all(_readable_file(Path(name), f"sinks.mqtt.tls.{key}", result) for key, name in files if name):
            _tls_loads(tls, result)
    _writable_dir(Path(mqtt.spool.path), "sinks.mqtt.spool.path", result)
    result.skipped.append(f"connecting to the MQTT broker {mqtt.host}:{mqtt.port} (only `run` does)")


def _tls_loads(tls: TlsConfig, result: Preflight) -> None:
    """Load the CA and client certificate as the MQTT sink will (its own loader): a file that is
    there but is not PEM (or a key that does not match) fails here rather than at `run`."""
    from edge.sinks.mqtt.connection import tls_context

    try:
        tls_context(tls)
    except EdgeError as exc:
        result.problems.append(str(exc))


def _relative_paths(config: Config, result: Preflight) -> None:
    """A relative path resolves against the current directory: `/` under systemd, not where you are."""
    paths = {"state_dir": config.state_dir, "model.path": config.model.path}
    if config.sinks.file.enabled:
        paths["sinks.file.path"] = config.sinks.file.path
    if config.sinks.mqtt.enabled:
        paths["sinks.mqtt.spool.path"] = config.sinks.mqtt.spool.path
    for key, value in paths.items():
        if value and not Path(value).is_absolute():
            result.notes.append(f"{key}: {value} is relative: resolved against the current directory ({Path.cwd()} here, / under systemd)")


def _readable_file(path: Path, key: str, result: Preflight) -> bool:
    try:
        with open(path, "rb") as f:
            f.read(1)
    except IsADirectoryError:
        result.problems.append(f"{key}: {path} is a folder, not a file")
        return False
    except OSError as exc:
        result.problems.append(f"{key}: cannot read {path} ({exc.strerror or exc})")
        return False
    return True


def _writable_dir(folder: Path, key: str, result: Preflight) -> None:
    """`folder` is writable, or the nearest existing ancestor would let `run` create it."""
    blocker = blocking_file(folder)
    if blocker is not None:
        result.problems.append(f"{key}: {blocker} is a file, not a folder")
        return
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        verb = "write in" if existing == folder else f"create {folder} in"
        result.problems.append(f"{key}: cannot {verb} {existing} (permission denied or read-only)")


def _state_lock(state_dir: Path, result: Preflight) -> None:
    """A daemon running on this state_dir is no fault of the config, but a second `run` would be refused."""
    holder = statelock.holder(state_dir)
    if holder is not None:
        result.notes.append(f"state_dir: {state_dir} is in use by a running mnv1-edge (pid {holder}); a second `run` on it is refused")


def _who(result: Preflight) -> None:
    """Permissions were checked as this user; say so when that is not the service's user."""
    uid = os.geteuid()
    try:
        me = pwd.getpwuid(uid).pw_name
    except KeyError:
        me = str(uid)
    if me == SERVICE_USER:
        return
    how = f"run `sudo -u {SERVICE_USER} mnv1-edge check-config PATH` to check them as the service does"
    if uid == 0:
        result.skipped.append(f"permissions as the service user {SERVICE_USER} (checked as root, who may read and write anything; {how})")
    else:
        result.skipped.append(f"permissions as the service user {SERVICE_USER} (checked as {me}; {how})")
