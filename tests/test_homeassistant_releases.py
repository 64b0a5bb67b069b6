"""Home Assistant 2024.3.3 and 2026.2.3 themselves, on a real mosquitto, create every entity we announce with the same entity ids.

Each release runs as a whole `hass` process (tests/support/ha_core.py) with the MQTT integration set up on a
broker holding our retained discovery messages; what it created is read from its saved entity registry.
Also measured here: device-based discovery (one `homeassistant/device/<id>/config` message with `cmps`,
since 2024.11), sent for a second device, to decide between the two ways of announcing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.sinks.mqtt import homeassistant
from tests.support import ha_core, ha_schema
from tests.support.booted import run, stop_process

PREFIX = "mnv1-edge/cam/"
ANSWERS = ("bird", "dog", 'say "cheese"')


def per_entity_messages() -> list[tuple[str, str]]:
    """What the daemon announces for device `cam`: one config topic per entity (every kind of entity)."""
    return homeassistant.discovery_messages("homeassistant", "cam", PREFIX, answers=ANSWERS, snapshots=True, view_check=True, light_check=True)


def device_based_message() -> tuple[str, str, list[str]]:
    """The same entities for device `camdev` in one device-based message (`cmps`, Home Assistant 2024.11+):
    the topic, the payload and the unique ids it announces."""
    topic_prefix = "mnv1-edge/camdev/"
    entities = homeassistant.entities(topic_prefix, answers=ANSWERS, snapshots=True, view_check=True, light_check=True)
    checks = {"snapshots": True, "view_check": True, "light_check": True}
    messages = homeassistant.discovery_messages("homeassistant", "camdev", topic_prefix, answers=ANSWERS, **checks)
    components: dict[str, dict[str, object]] = {}
    shared: dict[str, object] = {}
    for entity, (_, payload) in zip(entities, messages, strict=True):
        config = json.loads(payload)
        shared = {k: config.pop(k) for k in ("device", "origin", "availability_topic", "payload_available", "payload_not_available")}
        components[str(config["unique_id"])] = {"platform": entity.component, **config}
    return "homeassistant/device/mnv1_edge_camdev/config", json.dumps({**shared, "cmps": components}), list(components)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A network namespace of our own with mosquitto on 127.0.0.1:1883 holding both devices' retained discovery."""
    if os.geteuid() != 0:
        pytest.skip("Home Assistant runs in a network namespace of its own (and 2026.2.3 in a chroot): root only")
    workdir = tmp_path_factory.mktemp("ha")
    netns = f"mnv1ha-{os.getpid()}"
    run(["ip", "netns", "add", netns])
    mosquitto = None
    try:
        run(["ip", "-n", netns, "link", "set", "lo", "up"])
        conf = workdir / "mosquitto.conf"
        conf.write_text("listener 1883 127.0.0.1\nallow_anonymous true\npersistence false\n")
        log = open(workdir / "mosquitto.log", "wb")  # noqa: SIM115 - lives as long as the broker
        mosquitto = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{netns}", "mosquitto", "-c", str(conf)], stdout=log, stderr=log, start_new_session=True
        )
        topic, payload, _ = device_based_message()
        for t, p in (*per_entity_messages(), (topic, payload)):
            for _ in range(50):  # until the broker listens
                if run(["nsenter", f"--net=/run/netns/{netns}", "mosquitto_pub", "-r", "-q", "1", "-t", t, "-m", p], check=False).returncode == 0:
                    break
                time.sleep(0.1)
        yield netns, workdir
    finally:
        stop_process(mosquitto, 10)
        run(["ip", "netns", "del", netns])


@pytest.fixture(scope="module")
def created(broker: tuple[str, Path]) -> dict[str, list[dict[str, object]]]:
    """Each release's MQTT entities after it started on that broker."""
    netns, workdir = broker
    expect = len(per_entity_messages())
    out = {}
    for version in ha_core.RELEASES:
        try:
            release = ha_schema.release(version)
        except ha_schema.HaVenvMissing as exc:
            pytest.fail(str(exc))
        t0 = time.monotonic()
        # 2024.3.3 creates only the per-entity device's entities; later releases the device-based ones too.
        out[version] = ha_core.created_entities(release, netns, 1883, workdir, expect if ha_core.older(version, "2024.11") else 2 * expect)
        print(f"\nHome Assistant {version}: {len(out[version])} MQTT entities in {time.monotonic() - t0:.0f} s", file=sys.stderr)
    return out


@pytest.mark.slow
def test_every_announced_entity_is_created_with_the_same_id_on_both_releases(created: dict[str, list[dict[str, object]]]) -> None:
    announced = {json.loads(p)["unique_id"]: json.loads(p)["default_entity_id"] for _, p in per_entity_messages()}
    ids = {
        version: {e["unique_id"]: e["entity_id"] for e in entities if str(e["unique_id"]).startswith("mnv1_edge_cam_")}
        for version, entities in created.items()
    }
    lines = [f"{'unique_id':36} " + " ".join(f"{v:48}" for v in ids)]
    lines += [f"{uid:36} " + " ".join(f"{ids[v].get(uid, '(not created)'):48}" for v in ids) for uid in sorted(announced)]
    print("\nentity ids (what dashboards and automations name):\n" + "\n".join(lines), file=sys.stderr)
    for version, by_unique in ids.items():
        assert by_unique == announced, f"Home Assistant {version}: {by_unique} != {announced}"


def test_no_release_warns_about_our_payloads(broker: tuple[str, Path], created: dict[str, list[dict[str, object]]]) -> None:
    """2026.2 logs a deprecation warning for every entity announced with object_id alone (it stops working in
    2026.4); with default_entity_id beside it there is none, and nothing else about mnv1_edge either."""
    _, workdir = broker
    for version in created:
        log = ha_core.log_text(workdir, ha_schema.release(version))
        ours = [line for line in log.splitlines() if "mnv1_edge" in line and ("WARNING" in line or "ERROR" in line)]
        assert ours == [], ours


def test_device_based_discovery_is_not_understood_by_2024_3(created: dict[str, list[dict[str, object]]]) -> None:
    """Why we announce entity by entity: one device message would be fewer retained topics, but Home Assistant
    before 2024.11 creates nothing from it, while per-entity configs give the same ids on every release."""
    _, _, unique_ids = device_based_message()
    for version, entities in created.items():
        made = {e["unique_id"]: e["entity_id"] for e in entities if e["unique_id"] in unique_ids}
        print(f"\ndevice-based discovery on Home Assistant {version}: {len(made)} of {len(unique_ids)} entities", file=sys.stderr)
        if ha_core.older(version, "2024.11"):
            assert made == {}
        else:
            assert sorted(made) == sorted(unique_ids)


def test_the_per_entity_payloads_name_their_entity_id_in_both_keys() -> None:
    topic, payload = per_entity_messages()[0]
    config = json.loads(payload)
    assert (topic, config["object_id"], config["default_entity_id"]) == (
        "homeassistant/sensor/mnv1_edge_cam/answer/config",
        "mnv1_edge_cam_answer",
        "sensor.mnv1_edge_cam_answer",
    )
    assert ha_core.RELEASES.keys() == {"2024.3.3", "2026.2.3"}
