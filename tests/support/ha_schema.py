"""Checks discovery messages with Home Assistant's own MQTT discovery code, run in a release's venv as a subprocess.

Releases and their venvs: tests/support/ha_core.py (2024.3.3: `make ha-venv`; 2026.2.3 on trixie's Python 3.13
in a chroot: `make ha-venv-2026`, root only)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.ha_core import RELEASES, Release

HA_VENV = Path(os.environ.get("MNV1_EDGE_HA_VENV", "/var/cache/mnv1-edge-test/ha-venv"))
SCRIPT = Path(__file__).with_name("ha_discovery_check.py")
# Keys we send for newer releases that older ones drop silently, as planned: default_entity_id (2025.10 on)
# beside object_id, so that the entity ids stay the same on every release.
LATER_KEYS = frozenset({"default_entity_id"})


class HaVenvMissing(RuntimeError):
    pass


@dataclass(frozen=True)
class Verdict:
    """Home Assistant's answer for one discovery message (see ha_discovery_check.py)."""

    topic: str
    outcome: str  # accepted | rejected | removal | not_discovered
    component: str | None
    error: str | None
    ignored: list[str]
    config: dict[str, Any] | None
    rendered: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        """Accepted, with no key silently dropped (but LATER_KEYS) and every template rendered without a warning."""
        renders = [r for rs in self.rendered.values() for r in rs]
        dropped = set(self.ignored) - LATER_KEYS
        return self.outcome == "accepted" and not dropped and not any("error" in r or r["warnings"] for r in renders)


@dataclass(frozen=True)
class Report:
    ha_version: str
    verdicts: list[Verdict]

    def by_topic(self) -> dict[str, Verdict]:
        return {v.topic: v for v in self.verdicts}


def python() -> Path:
    exe = HA_VENV / "bin" / "python"
    if not exe.is_file():
        raise HaVenvMissing(f"{exe}: the Home Assistant test venv is missing; run `make ha-venv`")
    return exe


def release(version: str) -> Release:
    """A release whose venv exists, else HaVenvMissing naming the make target that builds it."""
    if version == "2024.3.3":
        return Release(version, python().parent.parent)
    found = RELEASES[version]
    if not found.available:
        raise HaVenvMissing(f"Home Assistant {version}: no venv in {found.root}; run `make ha-venv-2026` (as root)")
    return found


def check(
    messages: Iterable[tuple[str, str]],
    discovery_prefix: str = "homeassistant",
    samples: Mapping[str, Sequence[str | bytes]] | None = None,
    timeout: float = 120,
    version: str = "2024.3.3",
) -> Report:
    """Each (config topic, payload) through Home Assistant's discovery; `samples` (state topic ->
    payloads) are rendered through every template that reads that topic."""
    request = {
        "discovery_prefix": discovery_prefix,
        "messages": [{"topic": t, "payload": p} for t, p in messages],
        "samples": {t: [p.decode() if isinstance(p, bytes) else p for p in ps] for t, ps in (samples or {}).items()},
    }
    # -I: isolated from our PYTHONPATH and user site, so only the venv's packages are seen.
    ha = release(version)
    inside = "/mnt/ha-support"
    argv = ha.argv(["-I", f"{inside}/{SCRIPT.name}"], binds=[(SCRIPT.parent, inside)]) if ha.root else ha.argv(["-I", str(SCRIPT)])
    proc = subprocess.run(argv, input=json.dumps(request), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{SCRIPT.name} failed (exit {proc.returncode}): {proc.stderr[-4000:]}")
    data = json.loads(proc.stdout)
    verdicts = [
        Verdict(r["topic"], r["outcome"], r.get("component"), r["error"], r["ignored"], r["config"], r.get("rendered", {})) for r in data["results"]
    ]
    return Report(data["ha_version"], verdicts)
