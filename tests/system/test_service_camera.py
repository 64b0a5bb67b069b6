"""Camera faults and `mnv1-edge doctor` on the deployed device (after test_service.py, in the same container).

The fake picamera2 (tests/support/fake_picamera2.py) is installed into the device's venv as the
`picamera2` and `libcamera` packages and driven from the host through a control file; everything is
observed from outside: the journal files read with the host's journalctl, the unit's state with
systemctl inside the container through nsenter.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fake_camera_package import write_package
from tests.support.fake_picamera2 import CONTROL_ENV, SCENE_ENV
from tests.system.deployment import DEVICE, IMAGES_IN_TARGET, Deployment

pytestmark = pytest.mark.system

UNIT = "mnv1-edge.service"
CONFIG = "/etc/mnv1-edge/config.toml"
DOCTOR = "/opt/mnv1-edge/venv/bin/mnv1-edge doctor --config " + CONFIG
CONTROL = "/srv/mnv1-edge-test/camera-control"
DROPIN = "/etc/systemd/system/mnv1-edge.service.d/fake-camera.conf"
STALL_S = 5.0  # source.stall_timeout_s for these tests (WatchdogSec is 6)


def journal(d: Deployment) -> list[str]:
    """The unit's messages, read from the container's journal files by the host's journalctl."""
    directory = d.target.merged / "var/log/journal"
    proc = subprocess.run(
        ["journalctl", "-D", str(directory), "-u", UNIT, "-o", "cat", "--no-pager", "-q"], capture_output=True, text=True, timeout=30, check=False
    )
    return proc.stdout.splitlines()


def count(lines: list[str], pattern: str) -> int:
    return sum(1 for line in lines if re.search(pattern, line))


def _active(d: Deployment, timeout: float = 60) -> dict[str, str]:
    def active() -> dict[str, str] | None:
        s = d.service("ActiveState", "SubState", "MainPID", "NRestarts")
        return s if (s["ActiveState"], s["SubState"]) == ("active", "running") else None

    return d.wait_for("mnv1-edge active", active, timeout)  # type: ignore[return-value]


def _records_after(d: Deployment, seq: int, count: int = 2, timeout: float = 30) -> list[dict[str, object]]:
    def fresh() -> list[dict[str, object]]:
        recs = [r for r in d.file_records() if int(r["seq"]) > seq]  # type: ignore[call-overload]
        return recs if len(recs) >= count else []

    return d.wait_for(f"{count} records after seq {seq}", fresh, timeout)  # type: ignore[return-value]


def _last_seq(d: Deployment) -> int:
    return max(int(r["seq"]) for r in d.file_records())  # type: ignore[call-overload]


# -- mnv1-edge doctor ------------------------------------------------------------------------------------
def test_doctor_passes_on_the_device_as_the_service_user(deployment: Deployment) -> None:
    d, t = deployment, deployment.target
    d.playbook()  # test_service.py ended with the service stopped: the role starts it and runs the gate
    first = (d.workdir / "first-playbook.log").read_text()
    assert "TASK [mnv1_edge : Run mnv1-edge doctor as the service user]" in first and f"ok: [{DEVICE}]" in first
    _active(d)
    checks = json.loads(t.sh(f"runuser -u mnv1-edge -- {DOCTOR} --json").stdout)
    status = {c["check"]: c["status"] for c in checks}
    assert all(c["status"] != "FAIL" for c in checks), checks
    for name in ("config", "runtime", "model", "xnnpack", "self-test", "files", "broker"):
        assert status[name] == "OK", checks
    assert status["venv"] == "OK" and status["picamera2"] == "SKIP"  # the role's venv sees system packages; no camera needed
    files = [c["detail"] for c in checks if c["check"] == "files"]
    assert any(f.startswith("state_dir: /var/lib/mnv1-edge writable by mnv1-edge") for f in files), files
    # As root it checks the directories as the service user (runuser), not as root.
    as_root = t.sh(f"{DOCTOR}").stdout
    assert "writable by mnv1-edge (runuser -u mnv1-edge -- test -w)" in as_root, as_root


def test_the_health_gate_stops_a_device_its_doctor_fails(deployment: Deployment) -> None:
    d = deployment
    # The daemon runs fine with the broker unreachable (records are spooled), so only doctor sees it.
    run = d.playbook(extra_vars={"mnv1_edge_mqtt_port": 1884, "mnv1_edge_health_timeout": 20}, check=False)
    assert run.returncode != 0
    assert f"{DEVICE}: mnv1-edge failed its health gate: mnv1-edge doctor exited 69:" in run.stdout, run.stdout[-4000:]
    assert "FAIL  broker     127.0.0.1:1884: unreachable (Connection refused)" in run.stdout
    d.playbook()  # the right port again: the gate passes
    _active(d)


# -- camera faults -----------------------------------------------------------------------------------------
@pytest.fixture
def fake_camera(deployment: Deployment) -> Iterator[Path]:
    """The deployed daemon switched to source.kind = picamera2 on the fake camera; everything undone after."""
    t = deployment.target
    root = t.merged
    [site] = list((root / "opt/mnv1-edge/venv/lib").glob("python3.*/site-packages"))
    installed = write_package(site)
    control = root / CONTROL.lstrip("/")
    control.write_text("ok 0\n")
    original = t.sh(f"cat {CONFIG}").stdout
    assert 'kind = "images"' in original and "stall_timeout_s = 3.0" in original, original
    camera = original.replace('kind = "images"', 'kind = "picamera2"').replace("stall_timeout_s = 3.0", f"stall_timeout_s = {STALL_S}")
    camera += "\n[source.picamera2]\nframerate = 5.0\n"
    dropin = f"[Service]\nEnvironment={CONTROL_ENV}={CONTROL} {SCENE_ENV}={IMAGES_IN_TARGET}/parrot.jpg\n"
    try:
        t.sh(f"cat > {DROPIN} <<'EOF'\n{dropin}EOF\ncat > {CONFIG} <<'EOF'\n{camera}EOF\nsystemctl daemon-reload && systemctl restart {UNIT}")
        yield control
    finally:
        t.sh(f"rm -f {DROPIN} && cat > {CONFIG} <<'EOF'\n{original}EOF\nsystemctl daemon-reload && systemctl restart {UNIT}", check=False)
        for path in installed:
            subprocess.run(["rm", "-rf", str(path)], check=False)
        control.unlink(missing_ok=True)


def test_camera_faults_recover_in_process_without_a_watchdog_restart(deployment: Deployment, fake_camera: Path) -> None:
    d, t = deployment, deployment.target
    before = _active(d)
    d.wait_for("the start-up line on the fake camera", lambda: count(journal(d), r"started: .*source picamera2:0") >= 1, 30)
    _records_after(d, _last_seq(d))
    env = f"{CONTROL_ENV}={CONTROL}"
    doctor = t.sh(f"runuser -u mnv1-edge -- env {env} {DOCTOR}").stdout
    assert "OK    picamera2  importable; libcamera lists 0: imx219; source.picamera2.camera = 0" in doctor, doctor
    start = journal(d)

    # A frontend timeout: libcamera cancels the session's requests; capture_array(wait=) times out and
    # the source reopens the camera in-process, well within stall_timeout_s.
    fake_camera.write_text("cancel 1\n")
    d.wait_for("the camera reopened", lambda: count(journal(d)[len(start) :], r"picamera2:0: camera reopened") >= 1, 30)
    seq = _last_seq(d)
    _records_after(d, seq)
    time.sleep(2 * 6)  # two WatchdogSec: a starved watchdog would have fired by now
    lines = journal(d)[len(start) :]
    assert count(lines, r"picamera2:0: capture failed \(no frame within 1 s\); reopening the camera") == 1, lines
    after = d.service("MainPID", "NRestarts", "ActiveState")
    assert (after["MainPID"], after["NRestarts"], after["ActiveState"]) == (before["MainPID"], before["NRestarts"], "active")

    # A hung pipeline: the same frame forever. Found after stall_timeout_s, the camera is reopened.
    fake_camera.write_text("freeze 2\n")
    frozen = r"picamera2:0: frames unchanged \(within 0 levels\) for \d+ s \(source.stall_timeout_s\): frozen; reopening it"
    d.wait_for("the frozen camera found", lambda: count(journal(d)[len(start) :], frozen) >= 1, 30)
    d.wait_for("the frozen counter in a stats line", lambda: count(journal(d)[len(start) :], r"'frozen': 1, 'frozen_reopens': 1") >= 1, 30)
    _records_after(d, _last_seq(d))
    time.sleep(2 * 6)
    lines = journal(d)[len(start) :]
    assert count(lines, frozen) == 1, lines
    assert count(lines, r"watchdog pings stopped") == 0 and count(lines, r"Watchdog timeout") == 0, lines
    final = d.service("MainPID", "NRestarts", "ActiveState")
    assert (final["MainPID"], final["NRestarts"], final["ActiveState"]) == (before["MainPID"], before["NRestarts"], "active")
    print(f"\ncamera faults: {len(lines)} journal lines, NRestarts {final['NRestarts']} throughout", flush=True)
