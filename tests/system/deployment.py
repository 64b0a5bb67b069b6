"""The deployment under test: the booted target, the playbook run against it over SSH, and what it published."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edge import paths
from tests.support import booted
from tests.support.booted import run
from tests.system.harness import CACHE_DIR, Target

REPO = paths.REPO_ROOT
DEPLOY = REPO / "deploy"
IMAGES_IN_TARGET = "/srv/mnv1-edge-test/images"
DEVICE = "edge1"
TOPIC = f"mnv1-edge/{DEVICE}"
# mqtt for the MQTT sink; video (PyAV) for the stalling MJPEG camera of the watchdog test.
EXTRAS = "mqtt,video"


def require_root_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("tests/system boot a container: run them as root (make test does)")
    missing = [t for t in ("debootstrap", "systemd-nspawn", "nsenter", "mosquitto", "mosquitto_sub", "ssh") if shutil.which(t) is None]
    if missing:
        pytest.fail(f"missing tools for tests/system: {', '.join(missing)} (make apt-test installs them)")


@dataclass
class Deployment:
    """The booted target, how to run the playbook against it, and the MQTT messages seen so far."""

    target: Target
    workdir: Path
    extra_vars: dict[str, object]
    timings: dict[str, float] = field(default_factory=dict)
    mqtt: booted.Subscriber | None = None

    def playbook(self, *args: str, extra_vars: dict[str, object] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        vars_file = self.workdir / "vars.json"
        vars_file.write_text(json.dumps({**self.extra_vars, **(extra_vars or {})}))
        env = {
            **os.environ,
            "ANSIBLE_CONFIG": str(DEPLOY / "ansible.cfg"),
            "ANSIBLE_HOST_KEY_CHECKING": "False",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_LOCAL_TEMP": str(self.workdir / "ansible-tmp"),
        }
        cmd = self.target.in_netns(
            [REPO / ".venv/bin/ansible-playbook", "-i", self.workdir / "inventory.ini", DEPLOY / "site.yml", "-e", f"@{vars_file}", *args]
        )
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=False)
        (self.workdir / f"playbook-{int(time.time() * 1000)}.log").write_text(proc.stdout + proc.stderr)
        if check and proc.returncode != 0:
            raise AssertionError(f"ansible-playbook {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}")
        return proc

    def mqtt_lines(self) -> list[str]:
        assert self.mqtt is not None, "the subscriber starts with the deployment"
        return self.mqtt.lines()

    def mqtt_records(self) -> list[dict[str, object]]:
        assert self.mqtt is not None, "the subscriber starts with the deployment"
        return self.mqtt.records()

    def file_records(self) -> list[dict[str, object]]:
        text = self.target.sh("cat /var/lib/mnv1-edge/results.jsonl").stdout
        return [json.loads(line) for line in text.splitlines()]

    def service(self, *props: str) -> dict[str, str]:
        return self.target.show("mnv1-edge.service", *props)

    def wait_for(self, what: str, predicate: Callable[[], object], timeout: float = 60, interval: float = 0.5) -> object:
        return booted.wait_for(what, predicate, timeout, interval)


def wheelhouse(dest: Path) -> None:
    """The project wheel built now, plus dependency wheels cached outside the clone (keyed by pyproject.toml)."""
    key = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()[:12]
    cache = CACHE_DIR / f"wheels-cp311-x86_64-{EXTRAS.replace(',', '-')}-{key}"
    if not (cache / ".complete").is_file():
        tmp = CACHE_DIR / f"{cache.name}.tmp{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        run([DEPLOY / "build-wheelhouse", "--os", "bookworm", "--extras", EXTRAS, tmp], timeout=900)
        for wheel in tmp.glob("mnv1_edge-*.whl"):
            wheel.unlink()
        (tmp / ".complete").write_text("")
        shutil.rmtree(cache, ignore_errors=True)
        tmp.rename(cache)
    dest.mkdir(parents=True, exist_ok=True)
    for wheel in cache.glob("*.whl"):
        shutil.copy2(wheel, dest / wheel.name)
    run([DEPLOY / "build-wheelhouse", "--project-only", dest], timeout=300)


def model(dest: Path) -> Path:
    """The converted model `make model` built (the test command builds it before pytest)."""
    converted = paths.default_model()
    if not (converted.is_file() and Path(f"{converted}.json").is_file()):
        raise RuntimeError(f"{converted}: not built; run `make model` (the test command does)")
    dest.mkdir(parents=True, exist_ok=True)
    model = dest / converted.name
    shutil.copy2(converted, model)
    shutil.copy2(f"{converted}.json", f"{model}.json")
    return model


QUOTING_VALUE = 'say "hi" C:\\dir\\ 100% %n'


# What the system tests deploy: the sample photos, looping, capped at 4 fps (source.max_fps; uncapped
# an images folder is read as fast as inference allows and would take a core of a shared runner),
# both sinks, a short watchdog so the stall test is quick.
def extra_vars(wheelhouse: Path, model: Path) -> dict[str, object]:
    return {
        "mnv1_edge_wheelhouse": str(wheelhouse),
        "mnv1_edge_model_src": str(model),
        "mnv1_edge_source_kind": "images",
        "mnv1_edge_mqtt_enabled": True,
        "mnv1_edge_extras": EXTRAS.split(","),
        "mnv1_edge_watchdog_sec": 6,
        "mnv1_edge_restart_sec": 1,
        "mnv1_edge_health_timeout": 60,
        # What the drop-in must escape for systemd: quotes, backslashes and % (a specifier otherwise).
        "mnv1_edge_environment": {"MNV1_EDGE_TEST_QUOTING": QUOTING_VALUE},
        "mnv1_edge_config": {
            "stats_interval_s": 5.0,
            "source": {"max_fps": 4.0, "stall_timeout_s": 3.0, "images": {"path": IMAGES_IN_TARGET, "loop": True}},
            # A record per frame (the defaults vote and publish on change): the tests count records.
            "results": {"top_k": 3, "publish": "every", "smoothing": "none"},
            "sinks": {"mqtt": {"stats_interval_s": 5.0}},
        },
    }
