"""`mnv1-edge doctor` as an operator runs it: a real subprocess, the converted model, a real mosquitto."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edge.doctor.hardware import cpu_check, throttle_verdict
from edge.throttle import decode as decode_throttled
from tests.support.broker import Mosquitto, free_port
from tests.support.daemon import EXE, write_config

MakeBroker = Callable[..., Mosquitto]
USER, SECRET = "edge", "s3cret-Pw"


def doctor(config: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "MNV1_EDGE_MQTT_PASSWORD"}
    return subprocess.run(
        [EXE, "doctor", "--config", str(config), *args], capture_output=True, text=True, timeout=120, check=False, env={**base, **(env or {})}
    )


def lines(out: str, check: str) -> list[tuple[str, str]]:
    """(status, detail) of each line the text report printed for `check`."""
    found = []
    for line in out.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[1] == check and parts[0] in ("OK", "WARN", "FAIL", "SKIP"):
            found.append((parts[0], parts[2]))
    return found


def fix_of(out: str, check: str) -> str:
    """The `fix:` line printed under the first line of `check`."""
    rows = out.splitlines()
    for i, line in enumerate(rows):
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[1] == check and i + 1 < len(rows) and rows[i + 1].strip().startswith("fix: "):
            return rows[i + 1].strip()[5:]
    return ""


def config_data(tmp_path: Path, model: Path, shared: Path, **mqtt: Any) -> dict[str, Any]:
    sinks: dict[str, Any] = {"file": {"enabled": True, "path": str(tmp_path / "state" / "results.jsonl")}}
    if mqtt:
        sinks["mqtt"] = {"enabled": True, "host": "127.0.0.1", "spool": {"path": str(tmp_path / "state" / "spool")}, **mqtt}
    return {
        "device_id": "cam1",
        "state_dir": str(tmp_path / "state"),
        "model": {"path": str(model)},
        "source": {"kind": "images", "images": {"path": str(shared / "data" / "samples")}},
        "sinks": sinks,
    }


@pytest.fixture
def password_broker(make_broker: MakeBroker) -> Mosquitto:
    return make_broker(password=(USER, SECRET))


def _password_file(tmp_path: Path, secret: str) -> Path:
    path = tmp_path / "password"
    path.write_text(secret + "\n")
    path.chmod(0o600)
    return path


@pytest.mark.slow
def test_a_good_install_is_all_ok_and_exits_0(tmp_path: Path, converted_model: Path, shared: Path, password_broker: Mosquitto) -> None:
    password = _password_file(tmp_path, SECRET)
    config = write_config(
        tmp_path / "c.toml", config_data(tmp_path, converted_model, shared, port=password_broker.port, username=USER, password_file=str(password))
    )
    proc = doctor(config)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert lines(out, "config") == [("OK", f"{config}: device cam1, source images, sinks file, mqtt")]
    assert lines(out, "runtime")[0][0] == "OK"
    assert lines(out, "model")[0][0] == "OK" and "manifest ok, 1001 classes" in lines(out, "model")[0][1]
    assert lines(out, "xnnpack")[0][0] == "OK" and "XNNPACK takes every convolution" in lines(out, "xnnpack")[0][1]
    assert lines(out, "self-test")[0][0] == "OK"
    assert lines(out, "broker") == [("OK", f"127.0.0.1:{password_broker.port}: connected as {USER}")]
    files = dict(d.split(":", 1) for _, d in lines(out, "files"))
    assert set(files) == {"state_dir", "sinks.file.path", "sinks.mqtt.spool.path"}
    assert all(s == "OK" for s, _ in lines(out, "files"))
    assert lines(out, "picamera2")[0][0] == "SKIP"  # not installed here and not needed by an images source
    assert not [line for line in out.splitlines() if line.startswith("FAIL")]
    assert out.splitlines()[-1].startswith("doctor: ") and " 0 FAIL" in out.splitlines()[-1]
    # The doctor's client id is its own: the broker saw it connect and leave, no will published.
    log = password_broker.log_text()
    assert "mnv1-edge-doctor-" in log and "mnv1-edge-cam1" not in log


@pytest.mark.slow
def test_json_is_a_list_of_checks(tmp_path: Path, converted_model: Path, shared: Path) -> None:
    config = write_config(tmp_path / "c.toml", config_data(tmp_path, converted_model, shared))
    proc = doctor(config, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    checks = json.loads(proc.stdout)
    assert isinstance(checks, list) and checks
    assert all(set(c) == {"check", "status", "detail", "fix"} and c["status"] in ("OK", "WARN", "FAIL", "SKIP") for c in checks)
    names = [c["check"] for c in checks]
    for name in ("python", "venv", "config", "picamera2", "v4l2", "runtime", "model", "xnnpack", "self-test", "files", "cpu", "power"):
        assert name in names
    assert next(c for c in checks if c["check"] == "broker")["status"] == "SKIP"  # no MQTT sink configured


def test_a_missing_model_fails_with_the_fix(tmp_path: Path, shared: Path) -> None:
    config = write_config(tmp_path / "c.toml", config_data(tmp_path, tmp_path / "nope.tflite", shared))
    proc = doctor(config)
    assert proc.returncode == 69, proc.stdout
    [(status, detail)] = lines(proc.stdout, "model")
    assert status == "FAIL" and f"{tmp_path / 'nope.tflite'}: model file not found" in detail
    assert "copy the converted model and its manifest" in fix_of(proc.stdout, "model")
    assert lines(proc.stdout, "config")[0][0] == "OK"


def test_a_broken_manifest_fails(tmp_path: Path, converted_model: Path, shared: Path) -> None:
    model = tmp_path / converted_model.name
    shutil.copy(converted_model, model)
    Path(f"{model}.json").write_text('{"format": "mnv1-edge-manifest/1", "labels": ')
    config = write_config(tmp_path / "c.toml", config_data(tmp_path, model, shared))
    proc = doctor(config)
    assert proc.returncode == 69, proc.stdout
    [(status, detail)] = lines(proc.stdout, "model")
    assert status == "FAIL" and "manifest" in detail, detail
    assert lines(proc.stdout, "xnnpack") == [] and lines(proc.stdout, "self-test") == []


def test_an_unreachable_broker_fails(tmp_path: Path, converted_model: Path, shared: Path) -> None:
    port = free_port()  # nothing listens there
    config = write_config(tmp_path / "c.toml", config_data(tmp_path, converted_model, shared, port=port))
    proc = doctor(config)
    assert proc.returncode == 69, proc.stdout
    assert lines(proc.stdout, "broker") == [("FAIL", f"127.0.0.1:{port}: unreachable (Connection refused)")]
    assert "check sinks.mqtt.host and port" in fix_of(proc.stdout, "broker")


@pytest.mark.slow
def test_a_wrong_password_fails(tmp_path: Path, converted_model: Path, shared: Path, password_broker: Mosquitto) -> None:
    password = _password_file(tmp_path, "wrong-Pw")
    data = config_data(tmp_path, converted_model, shared, port=password_broker.port, username=USER, password_file=str(password))
    proc = doctor(write_config(tmp_path / "c.toml", data))
    assert proc.returncode == 69, proc.stdout
    [(status, detail)] = lines(proc.stdout, "broker")
    assert status == "FAIL" and detail.startswith(f"127.0.0.1:{password_broker.port}: refused as {USER}: ") and "authori" in detail.lower()
    assert "password_file" in fix_of(proc.stdout, "broker")
    assert "wrong-Pw" not in proc.stdout + proc.stderr


def test_a_state_dir_the_service_user_cannot_write_fails(tmp_path: Path, converted_model: Path, shared: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    config = write_config(tmp_path / "c.toml", config_data(tmp_path, converted_model, shared))
    # `nobody` stands in for the service user: it can read but not write a 0755 directory of ours.
    proc = doctor(config, "--user", "nobody")
    assert proc.returncode == 69, proc.stdout
    state_line = next(d for s, d in lines(proc.stdout, "files") if d.startswith("state_dir:"))
    assert f"state_dir: {state} not writable by nobody" in state_line
    assert f"sudo install -d -o nobody -g nobody -m 0750 {state}" in fix_of(proc.stdout, "files")


def test_a_picamera2_source_without_picamera2_fails_with_the_install_fix(tmp_path: Path, converted_model: Path, shared: Path) -> None:
    data = config_data(tmp_path, converted_model, shared)
    data["source"] = {"kind": "picamera2"}
    proc = doctor(write_config(tmp_path / "c.toml", data))
    assert proc.returncode == 69, proc.stdout
    [(status, detail)] = lines(proc.stdout, "picamera2")
    assert status == "FAIL" and "source.kind = picamera2 needs it" in detail
    assert "sudo apt install python3-picamera2" in fix_of(proc.stdout, "picamera2")
    # The shared test venv has no system site packages: the picamera2 source could never see the apt package.
    [(venv_status, venv_detail)] = lines(proc.stdout, "venv")
    if "include-system-site-packages = false" in venv_detail:
        assert venv_status == "FAIL" and "--system-site-packages" in fix_of(proc.stdout, "venv")


def test_a_broken_config_exits_78_and_still_checks_the_rest(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("frames_per_second = 3\n")
    proc = doctor(config)
    assert proc.returncode == 78, proc.stdout
    [(status, detail)] = lines(proc.stdout, "config")
    assert status == "FAIL" and "frames_per_second: unknown key" in detail
    assert lines(proc.stdout, "runtime")[0][0] == "OK" and lines(proc.stdout, "cpu")


def test_throttle_bits_are_decoded() -> None:
    assert decode_throttled(0) == ([], [])
    assert decode_throttled(0x50005) == (["under-voltage", "throttled"], ["under-voltage", "throttled"])
    assert decode_throttled(0x80000) == ([], ["soft temperature limit"])
    verdict = throttle_verdict(0x10000, "vcgencmd get_throttled")
    assert verdict.status == "WARN" and "since boot: under-voltage" in verdict.detail and "power supply" in verdict.fix
    assert throttle_verdict(0, "x").status == "OK"


def test_cpu_features_name_the_int8_fast_path() -> None:
    assert "asimddp" in cpu_check("aarch64", {"fp", "asimd", "asimddp"}).detail
    assert "without dot product" in cpu_check("aarch64", {"fp", "asimd"}).detail
    assert cpu_check("armv7l", set()).status == "WARN"
    assert cpu_check("x86_64", {"avx2", "avx512_vnni"}).detail == "x86_64 with avx2, avx512_vnni"


def test_a_picamera2_source_with_the_camera_listed_is_ok(tmp_path: Path, converted_model: Path, shared: Path) -> None:
    from tests.support.fake_camera_package import write_package

    write_package(tmp_path / "site")  # the fake picamera2 and libcamera, importable by the subprocess
    data = config_data(tmp_path, converted_model, shared)
    data["source"] = {"kind": "picamera2"}
    proc = doctor(
        write_config(tmp_path / "c.toml", data), env={"PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")])}
    )
    assert proc.returncode == 0, proc.stdout
    assert lines(proc.stdout, "picamera2") == [("OK", "importable; libcamera lists 0: imx219; source.picamera2.camera = 0")]
    assert lines(proc.stdout, "venv")[0][0] == "OK"


@pytest.mark.slow
def test_tls_is_checked_with_the_sinks_ca(tmp_path: Path, converted_model: Path, shared: Path, make_broker: MakeBroker) -> None:
    from tests.support.broker import make_certs

    ca, cert, key = make_certs(tmp_path)
    broker = make_broker(tls=(ca, cert, key))
    good = config_data(tmp_path, converted_model, shared, port=broker.port, tls={"enabled": True, "ca_file": str(ca)})
    good["sinks"]["mqtt"]["host"] = "localhost"  # the name the test certificate is for
    proc = doctor(write_config(tmp_path / "good.toml", good))
    assert lines(proc.stdout, "broker") == [("OK", f"localhost:{broker.port} (TLS): connected without credentials")], proc.stdout
    good["sinks"]["mqtt"]["tls"] = {"enabled": True}  # the system's CAs do not know the test CA
    proc = doctor(write_config(tmp_path / "bad.toml", good))
    assert proc.returncode == 69
    [(status, detail)] = lines(proc.stdout, "broker")
    assert status == "FAIL" and detail.startswith(f"localhost:{broker.port} (TLS): TLS handshake failed (CERTIFICATE_VERIFY_FAILED"), detail
    assert "sinks.mqtt.tls.ca_file" in fix_of(proc.stdout, "broker")
