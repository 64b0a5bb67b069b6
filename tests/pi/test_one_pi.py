"""mnv1-edge on an emulated Raspberry Pi OS trixie arm64 (a real arm64 kernel, systemd 257 as PID 1), installed
by the README's "One Pi" commands run unchanged; then checked from outside as the bookworm system test checks.

The tests share one boot and run in file order: the machine, the quick start, the healthy service, then the
disruptive checks (reload, hung camera, broken config, stop).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge import paths
from tests.pi.conftest import TOPIC, OnePi, quick_start
from tests.pi.image import HOSTNAME
from tests.pi.vm import CPU, HOST_FROM_VM
from tests.support import booted

pytestmark = pytest.mark.pi

UNIT = "mnv1-edge.service"
CONFIG = "/etc/mnv1-edge/config.toml"


def _active(pi: OnePi, timeout: float = 180) -> dict[str, str]:
    def active() -> dict[str, str] | None:
        s = pi.service("ActiveState", "SubState", "MainPID", "NRestarts")
        return s if (s["ActiveState"], s["SubState"]) == ("active", "running") else None

    return pi.wait_for("mnv1-edge active", active, timeout)  # type: ignore[return-value]


def _last_seq(pi: OnePi) -> int:
    return max(int(str(r["seq"])) for r in pi.file_records())


def _records_after(pi: OnePi, seq: int, count: int = 2, timeout: float = 120) -> list[dict[str, object]]:
    def fresh() -> list[dict[str, object]]:
        recs = [r for r in pi.file_records() if int(r["seq"]) > seq]  # type: ignore[call-overload]
        return recs if len(recs) >= count else []

    return pi.wait_for(f"{count} records after seq {seq}", fresh, timeout)  # type: ignore[return-value]


# -- the machine -------------------------------------------------------------------------------------------
def test_the_vm_is_an_arm64_trixie_with_systemd_and_every_unit_running(pi: OnePi) -> None:
    facts = pi.sh(
        "uname -m; uname -r; cat /proc/1/comm; systemctl --version | head -1; . /etc/os-release; echo $VERSION_CODENAME;"
        " python3 -c 'import platform; print(platform.python_version(), platform.libc_ver()[1])'; systemctl is-system-running"
    ).stdout.split("\n")
    machine, kernel, init, systemd, codename, python, state = facts[:7]
    print(f"\nVM: {machine} {CPU}, kernel {kernel}, {systemd}, {codename}, Python/glibc {python}; booted to {pi.vm.state}", file=sys.stderr)
    assert (machine, init, codename) == ("aarch64", "systemd", "trixie")
    assert python.startswith("3.13.") and python.endswith(" 2.41")
    # Every unit it needs runs: nothing failed at boot, none since (the service's own failures come later).
    assert pi.vm.state == "running" and state == "running", pi.sh("systemctl --failed --no-legend", check=False).stdout


def test_the_quick_start_ran_unchanged(pi: OnePi) -> None:
    commands = quick_start()
    assert list(pi.outputs) == commands["computer"] + commands["pi"]
    install = next(out.stdout for line, out in pi.outputs.items() if "/install" in line)
    recap = re.search(rf"^{HOSTNAME}\s+: ok=\d+\s+changed=\d+\s+unreachable=0\s+failed=0", install, re.MULTILINE)
    assert recap, install[-4000:]
    status = next(out.stdout for line, out in pi.outputs.items() if line.startswith("systemctl status"))
    assert "Active: active (running)" in status and "Loaded: loaded (/etc/systemd/system/mnv1-edge.service; enabled" in status, status
    print(f"\nquick start: {recap.group(0)}; timings {json.dumps({k: round(v) for k, v in pi.timings.items()})}", file=sys.stderr)


# -- a healthy service -------------------------------------------------------------------------------------
def test_the_service_is_active_with_ready_on_python_3_13_and_numpy_2_2(pi: OnePi) -> None:
    s = pi.service("Type", "ActiveState", "SubState", "NRestarts", "User", "StatusText", "MainPID")
    # Type=notify is active (running) only after READY=1: model loaded, self-test passed, first frame classified.
    assert (s["Type"], s["ActiveState"], s["SubState"], s["NRestarts"], s["User"]) == ("notify", "active", "running", "0", "mnv1-edge")
    assert "fps" in s["StatusText"], s
    # The venv sees Debian's NumPy through --system-site-packages, as the Pi's picamera2 needs.
    versions = pi.sh(
        "/opt/mnv1-edge/venv/bin/python -c 'import sys, numpy, ai_edge_litert; from importlib.metadata import version;"
        ' print(sys.version.split()[0], numpy.__version__, numpy.__file__, version("ai-edge-litert"))\''
    ).stdout.split()
    print(f"\nservice venv: Python {versions[0]}, NumPy {versions[1]} ({versions[2]}), ai-edge-litert {versions[3]}", file=sys.stderr)
    assert versions[0].startswith("3.13.") and versions[1].startswith("2.2.") and versions[2].startswith("/usr/lib/python3/dist-packages/")


def test_records_arrive_in_the_file_and_on_mqtt_as_the_host_classifies_them(pi: OnePi) -> None:
    file = pi.wait_for("3 records in the file", lambda: len(pi.file_records()) >= 3 and pi.file_records())
    mqtt = pi.wait_for("3 records on MQTT", lambda: len(pi.mqtt_records()) >= 3 and pi.mqtt_records(), 60)
    manifest = json.loads(Path(f"{paths.default_model()}.json").read_text())
    expected = _host_top1()
    for record in (*file, *mqtt):  # type: ignore[misc]
        assert record["device_id"] == HOSTNAME and record["model_sha256"] == manifest["model_sha256"]
        assert record["top_k"][0]["class_index"] == expected[record["source"]], record
    assert f"{TOPIC}/availability online" in pi.mqtt_lines()
    print(f"\n{len(file)} records in the file, {len(mqtt)} on MQTT, top-1 as on this x86_64 host", file=sys.stderr)  # type: ignore[arg-type]


def _host_top1() -> dict[str, int]:
    from edge.model.engine import Engine
    from edge.model.preprocess import list_images, load_image

    engine = Engine(paths.default_model())
    photos = [p for p in list_images(paths.sample_images()) if p.suffix.lower() in (".jpg", ".bmp")]
    return {p.name: engine.top_k(engine.classify(load_image(p)), 1)[0].class_index for p in photos}


def test_the_journal_has_the_startup_line_and_no_warnings(pi: OnePi) -> None:
    log = pi.journal("-o cat")
    assert re.search(
        rf"mnv1-edge \S+ started: runtime .* self-test ok .* sinks file:\S+, mqtt:{re.escape(HOST_FROM_VM)}:1883, device {HOSTNAME}", log
    ), log
    assert pi.journal("-p warning -o cat").strip() == ""


def test_doctor_passes_as_the_service_user(pi: OnePi) -> None:
    checks = json.loads(pi.sh("runuser -u mnv1-edge -- mnv1-edge doctor --json", timeout=300).stdout)
    status = {c["check"]: c["status"] for c in checks}
    assert all(c["status"] != "FAIL" for c in checks), checks
    for name in ("config", "runtime", "model", "xnnpack", "self-test", "files", "broker", "venv"):
        assert status[name] == "OK", checks
    as_pi = pi.vm.ssh("sudo mnv1-edge doctor", user="pi", timeout=300).stdout  # the README's line
    assert "OK    broker" in as_pi, as_pi
    print(f"\nmnv1-edge doctor on the Pi: {json.dumps(status)}", file=sys.stderr)


# -- operations --------------------------------------------------------------------------------------------
def test_sighup_reload_applies_a_changed_config_without_restart(pi: OnePi) -> None:
    before = _active(pi)
    last = _last_seq(pi)
    pi.sh(f"sed -i 's/^top_k = 3$/top_k = 2/' {CONFIG} && grep -q '^top_k = 2$' {CONFIG} && systemctl reload {UNIT}")
    fresh = pi.wait_for("records with top_k 2", lambda: [r for r in _records_after(pi, last, 1) if len(r["top_k"]) == 2], 120)  # type: ignore[arg-type]
    after = pi.service("MainPID", "NRestarts", "ActiveState")
    assert fresh and (after["MainPID"], after["NRestarts"], after["ActiveState"]) == (before["MainPID"], before["NRestarts"], "active")
    assert "reloaded:" in pi.journal("-o cat")


def test_a_hung_camera_is_restarted_by_the_watchdog(pi: OnePi) -> None:
    stall = pi.workdir / "stall"
    jpegs = sorted(str(p) for p in paths.sample_images().glob("*.jpg"))
    server_py = Path(__file__).parents[1] / "system" / "mjpeg_server.py"
    server = subprocess.Popen(pi.vm.in_netns([sys.executable, server_py, "--port", "8089", "--stall", stall, *jpegs]), start_new_session=True)
    original = pi.sh(f"cat {CONFIG}").stdout
    try:
        booted.wait_port(pi.vm.in_netns, 8089, 10)
        video = original.replace('kind = "images"', 'kind = "video"') + f'\n[source.video]\nurl = "http://{HOST_FROM_VM}:8089/cam.mjpg"\n'
        pi.sh(f"cat > {CONFIG} <<'EOF'\n{video}EOF\nsystemctl reload {UNIT}")
        pi.wait_for("the reload to the MJPEG camera", lambda: re.search(r"reloaded: .* source video:http", pi.journal("-o cat")), 120)
        before = _active(pi)
        stall.touch()  # the camera keeps the connection open and sends nothing
        pi.wait_for("a watchdog restart", lambda: int(pi.service("NRestarts")["NRestarts"]) > int(before["NRestarts"]), 180)
        log = pi.journal("-o cat")
        assert "watchdog pings stopped" in log and "Watchdog timeout" in log, log[-3000:]
        stall.unlink()  # the camera comes back: the restarted daemon gets its first frame and is READY
        _active(pi)
    finally:
        stall.unlink(missing_ok=True)
        pi.sh(f"cat > {CONFIG} <<'EOF'\n{original}EOF\nsystemctl reload {UNIT}", check=False)
        server.terminate()
        server.wait(10)
    _records_after(pi, _last_seq(pi))


def test_a_broken_config_fails_once_with_its_reason(pi: OnePi) -> None:
    original = pi.sh(f"cat {CONFIG}").stdout
    restarts = int(pi.service("NRestarts")["NRestarts"])
    try:
        pi.sh(f"cat > {CONFIG} <<'EOF'\nframes_per_second = 3\n{original}EOF")
        assert pi.sh(f"systemctl restart {UNIT}", check=False, timeout=300).returncode != 0
        time.sleep(6)  # RestartSec=1: a restart loop would show by now
        s = pi.service("ActiveState", "Result", "ExecMainStatus", "NRestarts")
        # No automatic restart: systemd 257 resets NRestarts on the manual restart, so it may only fall.
        assert (s["ActiveState"], s["ExecMainStatus"], s["Result"]) == ("failed", "78", "exit-code") and int(s["NRestarts"]) <= restarts, s
        assert f"mnv1-edge run: error: {CONFIG}: frames_per_second: unknown key" in pi.journal("-p err -o cat")
    finally:
        pi.sh(f"cat > {CONFIG} <<'EOF'\n{original}EOF\nsystemctl reset-failed {UNIT}; systemctl start {UNIT}", check=False, timeout=300)
    _active(pi)


def test_stop_is_clean_and_publishes_offline(pi: OnePi) -> None:
    _active(pi)
    stop_timeout = float(pi.service("TimeoutStopUSec")["TimeoutStopUSec"].rstrip("s"))
    t0 = time.monotonic()
    pi.sh(f"systemctl stop {UNIT}", timeout=stop_timeout + 30)
    took = time.monotonic() - t0
    s = pi.service("ActiveState", "Result", "ExecMainStatus")
    assert (s["ActiveState"], s["Result"], s["ExecMainStatus"]) == ("inactive", "success", "0")
    assert "stopping on signal" in pi.journal("-o cat")
    pi.wait_for("availability offline", lambda: [ln for ln in pi.mqtt_lines() if ln.startswith(f"{TOPIC}/availability")][-1].endswith(" offline"), 30)
    print(f"\nsystemctl stop took {took:.1f} s (TimeoutStopSec {stop_timeout:.0f} s)", file=sys.stderr)
