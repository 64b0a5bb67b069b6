"""Session fixture for tests/pi: one booted trixie arm64 VM, installed by the README's "One Pi" commands, run unchanged."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edge import paths
from tests.arm64.arm64_env import ensure_binfmt, locked
from tests.pi.image import HOSTNAME, ensure_image
from tests.pi.vm import HOST_FROM_VM, Vm, saved_boot
from tests.support import booted

REPO = paths.REPO_ROOT
IMAGES = "/srv/mnv1-edge-test/images"
TOPIC = f"mnv1-edge/{HOSTNAME}"
# What the test sets in settings.yml before `install`, as a user would: the sample photos instead of the
# Pi camera (the Raspberry Pi archive that has python3-picamera2 is not reachable here, and the role
# installs it only for the picamera2 source), the host's mosquitto, PyAV for the hung MJPEG camera of the
# watchdog test, and timings for software emulation (~10-20x slower than a Pi 4).
SETTINGS = {
    "mnv1_edge_source_kind": "images",
    "mnv1_edge_mqtt_enabled": True,
    "mnv1_edge_mqtt_host": HOST_FROM_VM,
    "mnv1_edge_extras": ["mqtt", "video"],
    "mnv1_edge_watchdog_sec": 20,
    "mnv1_edge_restart_sec": 1,
    "mnv1_edge_health_timeout": 300,
    "mnv1_edge_config": {
        "stats_interval_s": 10.0,
        "source": {"max_fps": 2.0, "stall_timeout_s": 5.0, "images": {"path": IMAGES, "loop": True}},
        # A record per frame (the defaults vote and publish on change): the tests count records.
        "results": {"top_k": 3, "publish": "every", "smoothing": "none"},
    },
}


def quick_start(readme: Path = REPO / "README.md") -> dict[str, list[str]]:
    """The command lines of each `<!-- one-pi:WHERE -->` block of the README, exactly as written."""
    blocks = re.findall(r"<!-- one-pi:(\w+) -->\s*```sh\n(.*?)```", readme.read_text(), re.DOTALL)
    return {where: [line for line in body.splitlines() if line.strip()] for where, body in blocks}


@dataclass
class OnePi:
    """The booted VM after the quick start, what its commands printed, and the MQTT messages seen so far."""

    vm: Vm
    workdir: Path
    outputs: dict[str, subprocess.CompletedProcess[str]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    mqtt: booted.Subscriber | None = None

    def sh(self, script: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.vm.ssh(script, check=check, timeout=timeout)

    def service(self, *props: str) -> dict[str, str]:
        out = self.sh("systemctl show mnv1-edge.service " + " ".join(f"-p {p}" for p in props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self, *args: str) -> str:
        return self.sh("journalctl --no-pager -q -u mnv1-edge.service " + " ".join(args), check=False).stdout

    def file_records(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.sh("cat /var/lib/mnv1-edge/results.jsonl").stdout.splitlines()]

    def mqtt_lines(self) -> list[str]:
        assert self.mqtt is not None, "the subscriber starts with the VM"
        return self.mqtt.lines()

    def mqtt_records(self) -> list[dict[str, object]]:
        assert self.mqtt is not None, "the subscriber starts with the VM"
        return self.mqtt.records()

    def wait_for(self, what: str, predicate: Callable[[], object], timeout: float = 120, interval: float = 1.0) -> object:
        return booted.wait_for(what, predicate, timeout, interval)


def require_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("tests/pi boot a VM in a network namespace of their own: run them as root (make test does)")
    tools = ("debootstrap", "qemu-system-aarch64", "qemu-img", "qemu-aarch64-static", "mkfs.ext4", "mosquitto", "mosquitto_sub", "ssh", "scp")
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.fail(f"missing tools for tests/pi: {', '.join(missing)} (make apt-test installs them)")


@pytest.fixture(scope="session")
def pi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OnePi]:
    require_tools()
    commands = quick_start()
    assert set(commands) == {"computer", "pi"} and len(commands["pi"]) <= 3, commands
    t0 = time.monotonic()
    with locked():  # the rootfs is shared with the arm64 userland stage
        ensure_binfmt()
        image = ensure_image()
        saved = saved_boot(image)
    workdir = tmp_path_factory.mktemp("pi")
    one = OnePi(Vm(image, workdir / "vm", resume=saved), workdir)
    one.timings["image"] = time.monotonic() - t0
    try:
        one.vm.start()
        one.timings.update(one.vm.timings)
        one.mqtt = booted.Subscriber(workdir, one.vm.in_netns, TOPIC)
        # On the computer: the bundle and the copy to raspberrypi.local, typed as the README has them.
        for line in commands["computer"]:
            t1 = time.monotonic()
            one.outputs[line] = done = one.vm.host_shell(line, cwd=REPO)
            one.timings[line] = time.monotonic() - t1
            assert done.returncode == 0, f"{line!r} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        unpack, *rest = commands["pi"]
        _as_pi(one, unpack)
        # What the user edits before `install` (see SETTINGS), and the photos the images source reads.
        settings = json.dumps(SETTINGS, indent=2)
        one.vm.ssh(f"cat > mnv1-edge-pi/settings.yml <<'EOF'\n# the test's settings (YAML is a superset of JSON)\n{settings}\nEOF", user="pi")
        photos = sorted(p for p in paths.sample_images().iterdir() if p.suffix.lower() in (".jpg", ".bmp"))
        tar = subprocess.run(["tar", "-C", str(photos[0].parent), "-cf", "-", *(p.name for p in photos)], capture_output=True, check=True)
        subprocess.run([*one.vm.ssh_argv(), f"mkdir -p {IMAGES} && tar -C {IMAGES} -xf -"], input=tar.stdout, check=True, timeout=120)
        for line in rest:
            _as_pi(one, line)
        one.timings["total_setup"] = time.monotonic() - t0
        (workdir / "timings.json").write_text(json.dumps(one.timings, indent=1))
        print(f"\none-Pi stage timings (s): {json.dumps({k: round(v, 1) for k, v in one.timings.items()})}", file=sys.stderr)
        yield one
    finally:
        if one.mqtt is not None:
            one.mqtt.stop()
        try:
            if os.environ.get("MNV1_EDGE_KEEP_LOGS"):
                keep = shutil.ignore_patterns("*.qcow2", "*.sock", "cm-*")
                shutil.copytree(workdir, os.environ["MNV1_EDGE_KEEP_LOGS"], dirs_exist_ok=True, ignore=keep)
        finally:
            one.vm.close()  # also when keeping the logs failed


def _as_pi(one: OnePi, line: str) -> None:
    """One line of the README typed at the Pi as user pi, unchanged; its output kept for the tests."""
    t0 = time.monotonic()
    one.outputs[line] = done = one.vm.ssh(line, user="pi", check=False, timeout=1800)
    one.timings[line] = time.monotonic() - t0
    (one.workdir / f"pi-{len(one.outputs)}.log").write_text(f"$ {line}\n{done.stdout}\n{done.stderr}")
    assert done.returncode == 0, f"{line!r} exited {done.returncode} on the Pi:\n{done.stdout[-6000:]}\n{done.stderr[-3000:]}"
