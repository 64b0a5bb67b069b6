"""Config parsing: defaults, dotted-path errors, cross-field checks, and the documented example."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edge.config import Config, ConfigError, documented_fields, example_toml, load, parse
from edge.paths import REPO_ROOT

MINIMAL = {"sinks": {"stdout": {"enabled": True}}}


def test_defaults_fill_everything_not_given() -> None:
    config = parse(MINIMAL)
    assert isinstance(config, Config)
    assert config.model.threads == 1
    assert config.source.roi == (0.0, 0.0, 1.0, 1.0)
    assert config.sinks.mqtt.qos == 1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({**MINIMAL, "sinks": {"stdout": {"enabled": True}, "mqtt": {"port": "x"}}}, "sinks.mqtt.port: expected an integer, got a string 'x'"),
        ({**MINIMAL, "sinks": {"stdout": {"enabled": True}, "mqtt": {"qos": 3}}}, "sinks.mqtt.qos: expected 0, 1 or 2"),
        ({**MINIMAL, "source": {"knd": "images"}}, "source.knd: unknown key"),
        ({**MINIMAL, "source": {"kind": "webcam"}}, "source.kind: expected one of"),
        ({**MINIMAL, "source": {"kind": "images"}}, 'source.images.path: required when kind = "images"'),
        ({**MINIMAL, "model": {"threads": 0}}, "model.threads: must be at least 1"),
        ({**MINIMAL, "model": {"self_test": "yes"}}, "model.self_test: expected true or false"),
        ({**MINIMAL, "source": {"picamera2": {"lores_size": [160]}}}, "source.picamera2.lores_size: expected a list of 2 values"),
        ({**MINIMAL, "sinks": {"stdout": {"enabled": True}, "mqtt": {"topic_prefix": "a/#"}}}, "sinks.mqtt.topic_prefix: must not contain"),
        ({"sinks": {"file": {"enabled": False}}}, "sinks: enable at least one sink"),
    ],
)
def test_errors_name_the_key(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        parse(data)


def test_load_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "config.toml"
    bad.write_text("[sinks.stdout]\nenabled = tru\n")
    with pytest.raises(ConfigError, match=f"{bad}: invalid TOML"):
        load(bad)
    with pytest.raises(ConfigError, match="config file not found"):
        load(tmp_path / "missing.toml")


def test_example_config_is_current_and_parses_to_the_defaults() -> None:
    example = REPO_ROOT / "examples" / "config.toml"
    assert example.read_text() == example_toml(), "regenerate: mnv1-edge check-config --example > examples/config.toml"
    assert load(example) == Config()
    assert len(documented_fields()) > 60


def test_cli_error_is_one_line_with_a_journald_priority_under_systemd(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    bad = tmp_path / "bad.toml"
    bad.write_text("[sinks.mqtt]\nqos = 3\n")
    exe = str(Path(sys.executable).with_name("mnv1-edge"))
    plain = subprocess.run([exe, "check-config", str(bad)], capture_output=True, text=True, env={**os.environ, "JOURNAL_STREAM": ""})
    journal = subprocess.run([exe, "check-config", str(bad)], capture_output=True, text=True, env={**os.environ, "JOURNAL_STREAM": "8:1234"})
    assert plain.returncode == journal.returncode == 78
    assert plain.stderr == f"mnv1-edge check-config: error: {bad}: sinks.mqtt.qos: expected 0, 1 or 2, got 3\n"
    assert journal.stderr == "<3>" + plain.stderr


def test_unreadable_config_files_are_one_line_errors(tmp_path: Path) -> None:
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes('device_id = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load(latin1)
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load(tmp_path)  # a directory


def test_a_rate_cap_slower_than_the_stall_timeout_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"source\.max_fps: 1/max_fps must be shorter than stall_timeout_s"):
        parse({**MINIMAL, "source": {"max_fps": 0.05, "stall_timeout_s": 10.0}})


MQTT_ON = {"stdout": {"enabled": True}, "mqtt": {"enabled": True}}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        # Each of these was accepted by check-config and then misbehaved at run time.
        ({**MINIMAL, "sinks": {**MQTT_ON, "mqtt": {"keepalive_s": 100000}}}, "sinks.mqtt.keepalive_s: must be between 1 and 65535, got 100000"),
        ({**MINIMAL, "model": {"threads": 100000}}, "model.threads: must be at most"),
        ({**MINIMAL, "results": {"threshold": 1.5}}, "results.threshold: must be between 0 and 1, got 1.5"),
        ({**MINIMAL, "results": {"threshold": float("nan")}}, "results.threshold: expected a finite number, got nan"),
        ({**MINIMAL, "results": {"hysteresis": -0.1}}, "results.hysteresis: must be between 0 and 1"),
        ({**MINIMAL, "results": {"heartbeat_s": -1.0}}, "results.heartbeat_s: must be at least 0"),
        ({**MINIMAL, "sinks": {"file": {"fsync_interval_s": float("nan")}}}, "sinks.file.fsync_interval_s: expected a finite number"),
        ({**MINIMAL, "sinks": {"file": {"fsync_interval_s": -5.0}}}, "sinks.file.fsync_interval_s: must be greater than 0"),
        ({**MINIMAL, "stats_interval_s": -1.0}, "stats_interval_s: must be at least 0"),
        ({**MINIMAL, "source": {"synthetic": {"frames": -3}}}, "source.synthetic.frames: must be at least 0"),
        ({**MINIMAL, "source": {"synthetic": {"seed": -1}}}, "source.synthetic.seed: must be between 0 and 4294967295"),
        ({**MINIMAL, "source": {"max_fps": float("nan")}}, "source.max_fps: expected a finite number, got nan"),
        ({**MINIMAL, "sinks": {**MQTT_ON, "mqtt": {"close_timeout_s": float("inf")}}}, "close_timeout_s: expected a finite number, got inf"),
        ({**MINIMAL, "model": {"sha256": "z" * 64}}, "model.sha256: expected 64 hex digits"),
        ({**MINIMAL, "sinks": {**MQTT_ON, "mqtt": {"homeassistant": {"discovery_prefix": "$SYS"}}}}, "discovery_prefix: must not start with $"),
        ({**MINIMAL, "sinks": {**MQTT_ON, "mqtt": {"homeassistant": {"discovery_prefix": "ha//x"}}}}, "discovery_prefix: must not have an empty"),
        ({**MINIMAL, "sinks": {**MQTT_ON, "mqtt": {"homeassistant": {"discovery_prefix": ""}}}}, "discovery_prefix: must not be empty"),
        ({**MINIMAL, "device_id": "cam\t1"}, "device_id: must not contain / # + spaces or control characters"),
        ({**MINIMAL, "sinks": {**MQTT_ON, "mqtt": {"client_id": "a\x01b"}}}, "sinks.mqtt.client_id: must not contain # + or control characters"),
    ],
)
def test_ranges_and_finite_numbers_are_checked_at_config_time(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse(data)


def test_a_sha256_pin_of_either_case_is_accepted() -> None:
    digest = "0a0a478e343a22870db7df88f222728d9b08135cd7bee9bb6edd1b5c4d96f2e0"
    assert parse({**MINIMAL, "model": {"sha256": digest.upper()}}).model.sha256 == digest.upper()


def test_model_default_is_the_installed_configs_on_a_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edge.commands import default_model
    from edge.paths import default_model as checkout_model

    installed = tmp_path / "config.toml"
    monkeypatch.setattr("edge.config.DEFAULT_PATH", installed)
    assert default_model() == str(checkout_model())  # no installed config: this checkout's build output
    installed.write_text('[model]\npath = "/srv/models/own.tflite"\n[sinks.stdout]\nenabled = true\n')
    assert default_model() == "/srv/models/own.tflite"
