"""Config files and model manifests: what misbehaved later is refused at load, one line naming the file and key."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import base_config, write_config
from tests.support.faults import cli, model

__all__ = ["model"]  # a fixture

LONG = "d" * 70_000


def merged(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    """`base` with `change` over it, tables merged key by key."""
    out = dict(base)
    for key, value in change.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@pytest.mark.parametrize(
    ("change", "message"),
    [
        # paho's network thread died building CONNECT (struct.error), exit 0, the records stuck in the spool.
        ({"device_id": LONG}, "device_id: too long: it makes the MQTT name mnv1-edge/dddd"),
        ({"sinks": {"mqtt": {"topic_prefix": LONG}}}, "sinks.mqtt.topic_prefix: too long"),
        ({"sinks": {"mqtt": {"client_id": LONG}}}, "sinks.mqtt.client_id: too long: it makes the MQTT name dddd"),
        (
            {"sinks": {"mqtt": {"homeassistant": {"discovery_prefix": LONG}}}},
            "sinks.mqtt.homeassistant.discovery_prefix: must be shorter: 70000 bytes",
        ),
        # The .prom file was never written and nobody said so.
        (
            {"stats_interval_s": 0, "sinks": {"prometheus": {"enabled": True, "path": "/tmp/x.prom"}}},
            "stats_interval_s: must be above 0 with sinks.prometheus",
        ),
        # One of the two got "File exists" at run time; check-config passed it.
        ({"sinks": {"file": {"path": "/tmp/r.jsonl"}, "mqtt": {"spool": {"path": "/tmp/r.jsonl"}}}}, "sinks.mqtt.spool.path: is sinks.file.path"),
        (
            {"sinks": {"file": {"path": "/tmp/r.jsonl"}}, "snapshots": {"enabled": True, "path": "/tmp/./r.jsonl"}},
            "snapshots.path: is sinks.file.path",
        ),
        # 1,100 user groups each naming the next: RecursionError.
        ({"groups": {**{f"g{i}": [f"g{i + 1}"] for i in range(1100)}, "g1100": [1]}}, "groups.g0: groups nest more than 32 deep"),
        # "names itself", without saying the user's group replaces the built-in one.
        ({"groups": {"bird": ["bird", 336]}}, "groups.bird: a group named 'bird' replaces the built-in group 'bird', so 'bird' in it names itself"),
    ],
    ids=[
        "device-id",
        "topic-prefix",
        "client-id",
        "discovery-prefix",
        "prometheus-never",
        "spool-is-file",
        "snapshots-is-file",
        "deep-groups",
        "replaces",
    ],
)
def test_values_that_failed_later_are_config_errors(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    config = write_config(tmp_path / "c.toml", merged({"sinks": {"mqtt": {"enabled": True}}}, change))
    run = cli("check-config", "--syntax-only", str(config))
    assert run.returncode == 78 and f"{config}: {message}" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.splitlines()) == 1 and len(run.stderr) < 400


def test_a_toml_nested_too_deeply_is_invalid_toml(tmp_path: Path) -> None:
    """check-config on a TOML nested 100,000 deep was a RecursionError traceback."""
    config = tmp_path / "c.toml"
    config.write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    run = cli("check-config", str(config))
    assert run.returncode == 78 and f"{config}: invalid TOML: arrays or tables nested too deeply" in run.stderr, run.stderr


def test_a_group_no_answer_uses_is_noted(tmp_path: Path, model: Path) -> None:
    """[groups] defined but not named by results.groups was silently unused."""
    data = base_config(tmp_path, model, frames=2)
    data["groups"] = {"feeder": ["bird", 336], "perch": ["feeder", 337], "lonely": [1]}
    data["results"] = {**data["results"], "groups": ["perch"]}
    config = write_config(tmp_path / "c.toml", data)
    checked = cli("check-config", str(config))
    assert checked.returncode == 0, checked.stderr
    assert f"{config}: note: groups.lonely: defined, but results.groups does not name it (nor a group it names): unused" in checked.stderr
    assert "groups.feeder" not in checked.stderr  # perch names it
    ran = cli("run", "--config", str(config))
    assert ran.returncode == 0 and "WARNING edge.daemon: groups.lonely: defined, but results.groups does not name it" in ran.stderr, ran.stderr


def manifest_copy(tmp_path: Path, model: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    copy = tmp_path / "m.tflite"
    shutil.copy(model, copy)
    data = json.loads(Path(f"{model}.json").read_text())
    change(data)
    Path(f"{copy}.json").write_text(json.dumps(data))
    return copy


def _own_classes(data: dict[str, Any], labels: list[str]) -> None:
    data["labels"], data["output_shape"] = labels, [1, len(labels)]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        # a ZeroDivisionError in the capture thread (exit 69); 1.5 or NaN skipped every image without naming the manifest
        (lambda d: d.update(crop_fraction=0), "m.tflite.json: crop_fraction must be above 0 and at most 1"),
        (lambda d: d.update(crop_fraction=1.5), "m.tflite.json: crop_fraction must be above 0 and at most 1"),
        (lambda d: d.update(crop_fraction=float("nan")), "m.tflite.json: crop_fraction must be above 0 and at most 1"),
        (lambda d: _own_classes(d, ["cat", "cat"]), "m.tflite.json: labels: 'cat' and 'cat' name the same class"),
    ],
    ids=["crop-0", "crop-1.5", "crop-nan", "same-labels"],
)
@pytest.mark.slow
def test_a_manifest_out_of_range_is_refused_at_load(tmp_path: Path, model: Path, shared: Path, change: Any, message: str) -> None:
    broken = manifest_copy(tmp_path, model, change)
    data = base_config(tmp_path, broken, frames=3)
    data["source"] = {"kind": "images", "images": {"path": str(shared / "data" / "samples" / "owl.jpg")}}
    for args in (
        ("run", "--config", str(write_config(tmp_path / "c.toml", data))),
        ("classify", "--model", str(broken), str(shared / "data" / "samples" / "owl.jpg")),
    ):
        run = cli(*args)
        assert run.returncode == 65 and message in run.stderr, (args, run.stderr)
        assert "Traceback" not in run.stderr


def test_a_truncated_model_is_called_truncated(tmp_path: Path, model: Path) -> None:
    """A model cut in half got "manifest belongs to another model" though model_bytes showed it was a partial copy."""
    half = manifest_copy(tmp_path, model, lambda d: None)
    half.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    run = cli("info", "--model", str(half))
    assert run.returncode == 65, run.stderr
    assert (
        f"{half}: {model.stat().st_size // 2} bytes, its manifest says {model.stat().st_size}: a truncated or partial copy; copy the model again"
        in run.stderr
    )


def test_the_manifest_given_as_the_model_is_named(tmp_path: Path, model: Path) -> None:
    """model.path pointing at the manifest gave "….json.json: manifest missing"."""
    copy = manifest_copy(tmp_path, model, lambda d: None)
    config = write_config(tmp_path / "c.toml", {"model": {"path": f"{copy}.json"}})
    run = cli("info", "--config", str(config))
    assert run.returncode == 65 and f"{copy}.json: is the manifest; give the model file {copy}" in run.stderr, run.stderr
    assert ".json.json" not in run.stderr
