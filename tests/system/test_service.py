"""mnv1-edge.service on a real systemd (bookworm, systemd 252), deployed by the Ansible role; checked from outside.

The tests share one container and run in file order: healthy-run checks first, then the disruptive
ones (reload, kill -9, stalled camera, failed rollout, broken config, stop).
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
from tests.support import booted
from tests.system.deployment import DEPLOY, DEVICE, QUOTING_VALUE, REPO, TOPIC, Deployment

pytestmark = pytest.mark.system

UNIT = "mnv1-edge.service"
CONFIG = "/etc/mnv1-edge/config.toml"


def _recap(output: str) -> dict[str, int]:
    line = next(line for line in output.splitlines() if line.startswith(f"{DEVICE} ") and "changed=" in line)
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}


def _wait_active(d: Deployment, timeout: float = 60) -> dict[str, str]:
    def active() -> dict[str, str] | None:
        s = d.service("ActiveState", "SubState", "MainPID", "NRestarts")
        return s if (s["ActiveState"], s["SubState"]) == ("active", "running") else None

    return d.wait_for("mnv1-edge active", active, timeout)  # type: ignore[return-value]


def _seqs(records: list[dict[str, object]]) -> list[int]:
    return [int(r["seq"]) for r in records]  # type: ignore[call-overload]


def _wait_new_records(d: Deployment, after_seq: int, count: int = 2, timeout: float = 60) -> list[dict[str, object]]:
    def fresh() -> list[dict[str, object]]:
        recs = [r for r in d.file_records() if int(r["seq"]) > after_seq]  # type: ignore[call-overload]
        return recs if len(recs) >= count else []

    return d.wait_for(f"{count} records after seq {after_seq}", fresh, timeout)  # type: ignore[return-value]


# -- a healthy deployment ----------------------------------------------------------------------------
def test_service_is_active_after_the_rollout(deployment: Deployment) -> None:
    t = deployment.target
    assert t.sh(f"systemctl is-active {UNIT}", check=False).stdout.strip() == "active", t.journal(f"-u {UNIT} -n 50")
    assert t.sh(f"systemctl is-enabled {UNIT}").stdout.strip() == "enabled"
    s = deployment.service("NRestarts", "User", "SupplementaryGroups", "StatusText")
    assert s["NRestarts"] == "0"
    assert (s["User"], s["SupplementaryGroups"]) == ("mnv1-edge", "video")
    assert t.sh("id -nG mnv1-edge").stdout.split() == ["mnv1-edge", "video"]
    # mnv1_edge_environment reaches the daemon verbatim through the drop-in's escaping.
    environ = t.sh(f"cat /proc/{deployment.service('MainPID')['MainPID']}/environ").stdout.split("\0")
    assert f"MNV1_EDGE_TEST_QUOTING={QUOTING_VALUE}" in environ, environ


def test_classifications_arrive_on_mqtt_and_in_the_file(deployment: Deployment) -> None:
    d = deployment
    manifest = json.loads(Path(f"{d.extra_vars['mnv1_edge_model_src']}.json").read_text())
    mqtt = d.wait_for("3 records on MQTT", lambda: len(d.mqtt_records()) >= 3 and d.mqtt_records())
    file = d.wait_for("3 records in the file", lambda: len(d.file_records()) >= 3 and d.file_records())
    for record in (*mqtt[:3], *file[:3]):  # type: ignore[misc]
        assert record["device_id"] == DEVICE
        assert record["model_sha256"] == manifest["model_sha256"]
        assert 1 <= len(record["top_k"]) <= 3
    # the device classifies each sample photo exactly as `mnv1-edge classify` does on this host
    expected = _host_top1(Path(str(d.extra_vars["mnv1_edge_model_src"])))
    for record in (*mqtt, *file):  # type: ignore[misc]
        assert record["top_k"][0]["class_index"] == expected[record["source"]], record
    assert f"{TOPIC}/availability online" in d.mqtt_lines()


def _host_top1(model: Path) -> dict[str, int]:
    from edge.model.engine import Engine
    from edge.model.preprocess import list_images, load_image

    engine = Engine(model)
    photos = [p for p in list_images(paths.sample_images()) if p.suffix.lower() in (".jpg", ".bmp")]
    return {p.name: engine.top_k(engine.classify(load_image(p)), 1)[0].class_index for p in photos}


def test_journal_has_the_startup_line_and_no_warnings(deployment: Deployment) -> None:
    t = deployment.target
    log = t.journal(f"-u {UNIT} -o cat")
    assert re.search(r"mnv1-edge \S+ started: runtime .* self-test ok .* sinks file:\S+, mqtt:127\.0\.0\.1:1883, device edge1", log), log
    assert t.journal(f"-u {UNIT} -p warning -o cat").strip() == ""


def test_hardening_exposure_and_verify(deployment: Deployment) -> None:
    t = deployment.target
    security = t.sh(f"systemd-analyze security --no-pager {UNIT}").stdout
    exposure = float(re.search(r"Overall exposure level for \S+: (\d+\.\d+)", security).group(1))  # type: ignore[union-attr]
    print(f"\nsystemd-analyze security: exposure {exposure}", file=sys.stderr)
    assert exposure <= 2.0, security
    verify = t.sh(f"systemd-analyze verify /etc/systemd/system/{UNIT} 2>&1", check=False)
    assert verify.returncode == 0 and verify.stdout.strip() == "", verify.stdout
    # The camera stays reachable: the allow-list is what systemd applied.
    allow = t.sh(f"systemctl show -p DevicePolicy -p DeviceAllow {UNIT}").stdout.splitlines()
    assert "DevicePolicy=closed" in allow
    for group in ("char-video4linux rw", "char-media rw", "char-dma_heap rw", "char-vchiq rw"):
        assert f"DeviceAllow={group}" in allow


def test_second_run_changes_nothing_and_check_diff_works(deployment: Deployment) -> None:
    pid = deployment.service("MainPID")["MainPID"]
    again = deployment.playbook()
    assert _recap(again.stdout)["changed"] == 0, again.stdout
    check = deployment.playbook("--check", "--diff")
    assert _recap(check.stdout)["changed"] == 0, check.stdout
    assert deployment.service("MainPID")["MainPID"] == pid


def _task_output(stdout: str, header: str) -> str:
    return stdout.split(header, 1)[1].split("TASK [", 1)[0]


def test_changed_extras_are_installed_and_a_disabled_running_service_restarts(deployment: Deployment) -> None:
    # A device deployed without the video extra whose unit was disabled by hand while running: --check
    # must show the extras' change (pip's check compares only name and version), and the real run must
    # install PyAV and restart the old process although the enable step reports a change too.
    d, t = deployment, deployment.target
    venv = "/opt/mnv1-edge/venv"
    before = _wait_active(d)
    t.sh(f"{venv}/bin/pip uninstall -q -y av && sed -i 's/,video//' /opt/mnv1-edge/installed-spec && systemctl disable -q {UNIT}")
    assert t.sh(f"{venv}/bin/python -c 'import av'", check=False).returncode != 0
    check = d.playbook("--check", "--diff")
    assert re.search(r"^\+mnv1-edge\[mqtt,video\]==", check.stdout, re.MULTILINE), check.stdout
    run = d.playbook()
    assert f"changed: [{DEVICE}]" in _task_output(run.stdout, "TASK [mnv1_edge : Install mnv1-edge into its venv"), run.stdout
    assert f"changed: [{DEVICE}]" in _task_output(run.stdout, "RUNNING HANDLER [mnv1_edge : Restart mnv1-edge]"), run.stdout
    t.sh(f"{venv}/bin/python -c 'import av'")
    assert t.sh(f"systemctl is-enabled {UNIT}").stdout.strip() == "enabled"
    assert _wait_active(d)["MainPID"] != before["MainPID"]


# -- operations ------------------------------------------------------------------------------------------
def test_reload_applies_a_changed_config_without_restart(deployment: Deployment) -> None:
    d = deployment
    before = _wait_active(d)
    last = max(_seqs(d.file_records()))
    changed = json.loads(json.dumps(d.extra_vars["mnv1_edge_config"]))
    changed["results"]["top_k"] = 2
    run = d.playbook(extra_vars={"mnv1_edge_config": changed})
    assert "RUNNING HANDLER [mnv1_edge : Reload mnv1-edge]" in run.stdout
    assert "RUNNING HANDLER [mnv1_edge : Restart mnv1-edge]" not in run.stdout
    fresh = d.wait_for("records with top_k 2", lambda: [r for r in _wait_new_records(d, last, 1) if len(r["top_k"]) == 2], 30)  # type: ignore[arg-type]
    after = d.service("MainPID", "NRestarts", "ActiveState")
    assert (after["MainPID"], after["NRestarts"], after["ActiveState"]) == (before["MainPID"], before["NRestarts"], "active")
    assert fresh
    assert "reloaded:" in d.target.journal(f"-u {UNIT} -o cat")


def test_kill_9_restarts_and_loses_no_result(deployment: Deployment) -> None:
    d, t = deployment, deployment.target
    before = _wait_active(d)
    t.sh(f"kill -9 {before['MainPID']}")
    after = d.wait_for(
        "a restart after kill -9",
        lambda: (s := _wait_active(d)) and s["MainPID"] != before["MainPID"] and s,
    )
    assert int(after["NRestarts"]) == int(before["NRestarts"]) + 1  # type: ignore[index]
    last_before = max(_seqs(d.file_records()))
    _wait_new_records(d, last_before, 3)
    # The file: every line a whole record, numbers strictly increasing across the crash.
    seqs = _seqs(d.file_records())
    assert seqs == sorted(set(seqs))
    # MQTT: every record in the file arrives (QoS 1 from the on-disk spool; duplicates are allowed).
    d.wait_for("MQTT to catch up with the file", lambda: set(seqs) <= set(_seqs(d.mqtt_records())), 30)


def test_stalled_camera_is_restarted_by_the_watchdog(deployment: Deployment) -> None:
    d, t = deployment, deployment.target
    stall = d.workdir / "stall"
    jpegs = sorted(str(p) for p in paths.sample_images().glob("*.jpg"))
    server = subprocess.Popen(
        t.in_netns([sys.executable, Path(__file__).with_name("mjpeg_server.py"), "--port", "8089", "--stall", stall, *jpegs]),
        start_new_session=True,
    )
    original = t.sh(f"cat {CONFIG}").stdout
    try:
        booted.wait_port(t.in_netns, 8089, 10)
        video = original.replace('kind = "images"', 'kind = "video"') + '\n[source.video]\nurl = "http://127.0.0.1:8089/cam.mjpg"\n'
        t.sh(f"cat > {CONFIG} <<'EOF'\n{video}EOF\nsystemctl reload {UNIT}")
        d.wait_for("the reload to the MJPEG camera", lambda: re.search(r"reloaded: .* source video:http", t.journal(f"-u {UNIT} -o cat")), 30)
        before = _wait_active(d)
        stall.touch()  # the camera keeps the connection open and sends nothing
        d.wait_for("a watchdog restart", lambda: int(d.service("NRestarts")["NRestarts"]) > int(before["NRestarts"]), 40)
        log = t.journal(f"-u {UNIT} -o cat")
        assert "watchdog pings stopped" in log
        assert "Watchdog timeout" in log
        stall.unlink()  # the camera comes back: the restarted daemon gets its first frame and is READY
        _wait_active(d)
    finally:
        stall.unlink(missing_ok=True)
        t.sh(f"cat > {CONFIG} <<'EOF'\n{original}EOF\nsystemctl reload {UNIT}", check=False)
        server.terminate()
        server.wait(10)
    last = max(_seqs(d.file_records()))
    assert _wait_new_records(d, last, 2)


def test_a_device_failing_its_health_gate_stops_the_rollout(deployment: Deployment) -> None:
    d = deployment
    # A config check-config accepts (the folder has an image file) that fails at run time (the file is
    # not an image): only the health gate can catch it.
    d.target.sh("mkdir -p /srv/broken-images && echo 'not a picture' > /srv/broken-images/a.jpg")
    broken = json.loads(json.dumps(d.extra_vars["mnv1_edge_config"]))
    broken["source"]["images"]["path"] = "/srv/broken-images"
    bad = {"mnv1_edge_source_kind": "images", "mnv1_edge_config": broken, "mnv1_edge_restart_sec": 2, "mnv1_edge_health_timeout": 10}
    run = d.playbook(extra_vars=bad, check=False)
    assert run.returncode != 0
    assert "edge1: mnv1-edge failed its health gate: the service is not active" in run.stdout, run.stdout
    assert "no readable image in /srv/broken-images" in run.stdout  # the journal line says why
    d.playbook()  # the fixed rollout recovers the device (reset-failed, start, gate passes)
    _wait_active(d)


def test_broken_config_fails_clearly_and_does_not_restart_in_a_loop(deployment: Deployment) -> None:
    d, t = deployment, deployment.target
    original = t.sh(f"cat {CONFIG}").stdout
    restarts = int(d.service("NRestarts")["NRestarts"])
    try:
        t.sh(f"cat > {CONFIG} <<'EOF'\nframes_per_second = 3\n{original}EOF")
        assert t.sh(f"systemctl restart {UNIT}", check=False).returncode != 0
        time.sleep(4)  # RestartSec=1: a restart loop would show by now
        s = d.service("ActiveState", "Result", "ExecMainStatus", "NRestarts")
        assert (s["ActiveState"], s["ExecMainStatus"], s["Result"]) == ("failed", "78", "exit-code")
        assert int(s["NRestarts"]) == restarts
        log = t.journal(f"-u {UNIT} -p err -o cat")  # at priority err, so `journalctl -p err` shows it
        assert "mnv1-edge run: error: /etc/mnv1-edge/config.toml: frames_per_second: unknown key" in log, log
    finally:
        d.playbook()  # the role puts the good config back and starts the service
    _wait_active(d)


def test_stop_is_clean_and_publishes_offline(deployment: Deployment) -> None:
    d, t = deployment, deployment.target
    _wait_active(d)
    stop_timeout = float(d.service("TimeoutStopUSec")["TimeoutStopUSec"].rstrip("s"))
    t0 = time.monotonic()
    t.sh(f"systemctl stop {UNIT}", timeout=stop_timeout + 10)
    took = time.monotonic() - t0
    s = d.service("ActiveState", "Result", "ExecMainStatus")
    assert (s["ActiveState"], s["Result"], s["ExecMainStatus"]) == ("inactive", "success", "0")
    assert took < stop_timeout
    assert "stopping on signal" in t.journal(f"-u {UNIT} -o cat")
    d.wait_for("availability offline", lambda: [ln for ln in d.mqtt_lines() if ln.startswith(f"{TOPIC}/availability")][-1].endswith(" offline"), 10)
    print(f"\nsystemctl stop took {took:.1f} s (TimeoutStopSec {stop_timeout:.0f} s)", file=sys.stderr)


def test_ansible_lint_production_profile_is_clean() -> None:
    lint = REPO / ".venv/bin/ansible-lint"
    if not lint.exists():
        pytest.fail("ansible-lint missing: pip install -e '.[test]' (make setup-test)")
    proc = subprocess.run(
        [lint, "--profile", "production", "--offline", "site.yml"], cwd=DEPLOY, capture_output=True, text=True, check=False, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
