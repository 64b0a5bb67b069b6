"""Home Assistant itself, as a user runs it: a real `hass` process with its MQTT integration on a real mosquitto.

Each Home Assistant release the tests know (`RELEASES`) runs from a venv of its own: 2024.3.3 on this host's
Python 3.11 (`make ha-venv`), 2026.2.3 on Debian trixie's Python 3.13 in a cached x86_64 trixie root
filesystem entered with chroot (`make ha-venv-2026`; it needs Python >= 3.13.2). `created_entities` starts
one in a network namespace of its own next to a mosquitto holding our retained discovery messages, waits
until its entity registry is saved, stops it and returns what it created: the entity ids users see.
Root only (network namespace, chroot); the callers skip without it.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("MNV1_EDGE_TEST_CACHE", "/var/cache/mnv1-edge-test"))
SUPPORT = Path(__file__).parent


@dataclass(frozen=True)
class Release:
    """Where a Home Assistant release's Python lives: a venv on this host, or one inside a chroot."""

    version: str
    venv: Path  # on the host, or inside `root`
    root: Path | None = None  # a Debian root filesystem to chroot into

    @property
    def available(self) -> bool:
        python = (self.root / self.venv.relative_to("/") if self.root else self.venv) / "bin" / "python"
        return python.is_file()

    def argv(self, args: Sequence[str], binds: Sequence[tuple[Path, str]] = ()) -> list[str]:
        """The command line running `python ARGS` of this release; `binds` (host path, path inside) for a chroot."""
        python = str(self.venv / "bin" / "python")
        if self.root is None:
            return [python, *args]
        mounts = [f"mount -t proc proc {self.root}/proc", f"mount --bind /dev {self.root}/dev"]
        for host, inside in binds:
            target = self.root / inside.lstrip("/")
            target.mkdir(parents=True, exist_ok=True)
            mounts.append(f"mount --bind {shlex.quote(str(host))} {shlex.quote(str(target))}")
        script = " && ".join(mounts) + f' && exec chroot {self.root} /usr/bin/env -i PATH=/usr/bin:/bin LANG=C.UTF-8 HOME=/tmp "$@"'
        return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-ec", script, "sh", python, *args]


RELEASES = {
    # The newest release on Python 3.11 (2024.4 needs 3.12); the device-based discovery of 2024.11 is not in it.
    "2024.3.3": Release("2024.3.3", Path(os.environ.get("MNV1_EDGE_HA_VENV", CACHE / "ha-venv"))),
    # The newest release on Python 3.13 (2026.3 needs 3.14): object_id still honoured, default_entity_id preferred.
    "2026.2.3": Release("2026.2.3", Path("/opt/ha-venv"), Path(os.environ.get("MNV1_EDGE_HA_2026_ROOT", CACHE / "ha-2026.2.3-trixie-amd64"))),
}


def older(version: str, than: str) -> bool:
    """Whether Home Assistant `version` came before release `than` (both YYYY.M[.P])."""
    return tuple(map(int, version.split("."))) < tuple(map(int, than.split(".")))


def _config_entry(port: int) -> dict[str, object]:
    """The MQTT integration's config entry as Home Assistant 2024.3 stores it (storage version 1.1; later
    releases migrate it on load, as they do for a user upgrading)."""
    entry = {
        "entry_id": "mnv1edgetestmqtt0000000000000000",
        "version": 1,
        "minor_version": 1,
        "domain": "mqtt",
        "title": "127.0.0.1",
        "data": {"broker": "127.0.0.1", "port": port},
        "options": {},
        "pref_disable_new_entities": False,
        "pref_disable_polling": False,
        "source": "user",
        "unique_id": None,
        "disabled_by": None,
    }
    return {"version": 1, "minor_version": 1, "key": "core.config_entries", "data": {"entries": [entry]}}


def created_entities(release: Release, netns: str, broker_port: int, workdir: Path, expect: int, timeout: float = 240) -> list[dict[str, object]]:
    """Run Home Assistant `release` in network namespace `netns` (where mosquitto listens on 127.0.0.1:`broker_port`
    with our retained discovery configs) until its saved entity registry holds `expect` MQTT entities (or
    `timeout`), stop it, and return those registry entries (entity_id, unique_id, original_name, ...)."""
    config = workdir / f"ha-{release.version}"
    shutil.rmtree(config, ignore_errors=True)
    (config / ".storage").mkdir(parents=True)
    (config / ".storage" / "core.config_entries").write_text(json.dumps(_config_entry(broker_port)))
    # No frontend, no default_config: the core, MQTT and what MQTT depends on (http on loopback only).
    (config / "configuration.yaml").write_text(
        "homeassistant:\n  name: mnv1-edge test\n  time_zone: UTC\nhttp:\n  server_host: 127.0.0.1\n  server_port: 18123\n"
    )
    inside = "/mnt/ha-config" if release.root else str(config)
    args = ["-m", "homeassistant", "--config", inside, "--skip-pip", "--log-file", f"{inside}/home-assistant.log"]
    cmd = ["nsenter", f"--net=/run/netns/{netns}", *release.argv(args, binds=[(config, inside)] if release.root else [])]
    log = open(workdir / f"ha-{release.version}.out", "wb")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)
    registry = config / ".storage" / "core.entity_registry"
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None and len(_mqtt_entities(registry)) < expect:
            if "Setup failed for 'mqtt'" in log_text(workdir, release):
                break
            time.sleep(1)
    finally:
        if proc.poll() is None:
            proc.terminate()  # Home Assistant stops cleanly on SIGTERM and writes its registries
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        log.close()
    entities = _mqtt_entities(registry)
    if not entities:
        tail = (config / "home-assistant.log").read_text(errors="replace")[-4000:] if (config / "home-assistant.log").exists() else ""
        raise RuntimeError(f"Home Assistant {release.version} created no MQTT entity (exit {proc.returncode}): {tail}")
    return entities


def _mqtt_entities(registry: Path) -> list[dict[str, object]]:
    try:
        data = json.loads(registry.read_text())
    except (OSError, ValueError):
        return []
    return [e for e in data["data"]["entities"] if e.get("platform") == "mqtt"]


def log_text(workdir: Path, release: Release) -> str:
    path = workdir / f"ha-{release.version}" / "home-assistant.log"
    return path.read_text(errors="replace") if path.exists() else ""
