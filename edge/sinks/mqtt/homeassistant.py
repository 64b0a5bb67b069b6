"""Home Assistant MQTT discovery: one device per daemon with the answer, its score, per-answer binary sensors, diagnostics."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from edge import __version__

# Templates are rendered by Home Assistant, not by us (tests/test_homeassistant.py renders them with
# Home Assistant's own template engine). Numeric sensors render the text "None" for a missing value:
# Home Assistant's MQTT sensor turns that into "unknown" instead of logging a parse error.

# Records of schema v1 have no `answer`: fall back to the top-1 label as the daemon did then.
_ANSWER = "(value_json.answer if value_json.answer is defined else (value_json.top_k[0].label if value_json.top_k else 'none'))"
_ANSWER_TEMPLATE = "{{ " + _ANSWER + " }}"
# The score of the answer: its group's score, else its label's, else the best label's; in percent.
_SCORE_TEMPLATE = (
    "{% set a = " + _ANSWER + " %}"
    "{% set s = (value_json.groups | default([]) | selectattr('name', 'eq', a) | map(attribute='score') | list)"
    " + (value_json.top_k | default([]) | selectattr('label', 'eq', a) | map(attribute='score') | list)"
    " + (value_json.top_k | default([]) | map(attribute='score') | list) %}"
    "{{ (s[0] * 100) | round(1) if s else None }}"
)
_ATTRIBUTES_TEMPLATE = (
    "{{ {'groups': value_json.groups | default([]), 'top_k': value_json.top_k | default([]),"
    " 'seq': value_json.seq, 'ts': value_json.ts, 'snapshot': value_json.snapshot | default(None)} | tojson }}"
)


@dataclass(frozen=True)
class Entity:
    """One discovery config: `component` is Home Assistant's platform, `key` the object id under our node."""

    component: str
    key: str
    config: dict[str, Any]


def node_id(device_id: str) -> str:
    """Home Assistant accepts only [a-zA-Z0-9_-] in discovery node and object ids."""
    return "mnv1_edge_" + _safe(device_id)


def _safe(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_-]", "_", text)


def status_topic(discovery_prefix: str) -> str:
    """Home Assistant publishes `online` here when it (re)starts: discovery must be re-sent."""
    return f"{discovery_prefix}/status"


def own_configs_filter(discovery_prefix: str, device_id: str) -> str:
    """Every discovery config of this device: the broker's retained copies are the record of what
    was announced before, so a config it holds that we no longer announce gets removed."""
    return f"{discovery_prefix}/+/{node_id(device_id)}/+/config"


def config_topic(discovery_prefix: str, device_id: str, entity: Entity) -> str:
    return f"{discovery_prefix}/{entity.component}/{node_id(device_id)}/{entity.key}/config"


def answer_keys(answers: Sequence[str]) -> dict[str, str]:
    """answer name -> object id; names that clean up to the same id get a short hash to stay apart."""
    keys: dict[str, str] = {}
    for name in dict.fromkeys(answers):
        key = "answer_" + _safe(name).lower()
        if key in keys.values():
            key += "_" + hashlib.sha256(name.encode()).hexdigest()[:8]
        keys[name] = key
    return keys


def _sensor(key: str, name: str, topic: str, value: str, **extra: Any) -> Entity:
    return Entity("sensor", key, {"name": name, "state_topic": topic, "value_template": value, **extra})


def entities(
    topic_prefix: str, *, answers: Sequence[str] = (), snapshots: bool = False, view_check: bool = False, light_check: bool = False
) -> list[Entity]:
    """What this daemon announces: records on `classification`, stats on `stats`, JPEGs on `snapshot`;
    with `view_check`, a problem sensor that is on while a fixed-camera model's view is not as trained;
    with `light_check`, one that is on while the frames are out of the light the model was trained in."""
    records = topic_prefix + "classification"
    out = [
        _sensor(
            "answer",
            "Answer",
            records,
            _ANSWER_TEMPLATE,
            icon="mdi:label-outline",
            json_attributes_topic=records,
            json_attributes_template=_ATTRIBUTES_TEMPLATE,
        ),
        _sensor("score", "Score", records, _SCORE_TEMPLATE, icon="mdi:percent", unit_of_measurement="%", state_class="measurement"),
    ]
    for name, key in answer_keys(answers).items():
        on = "{{ 'ON' if " + _ANSWER + " == " + json.dumps(name) + " else 'OFF' }}"
        out.append(Entity("binary_sensor", key, {"name": f"{name} present", "state_topic": records, "value_template": on}))
    if snapshots:
        out.append(Entity("image", "snapshot", {"name": "Snapshot", "image_topic": topic_prefix + "snapshot", "content_type": "image/jpeg"}))
    if view_check:
        moved = "{{ 'ON' if (value_json.source | default({})).view_off | default(0) == 1 else 'OFF' }}"
        config = {"name": "Camera view moved", "state_topic": topic_prefix + "stats", "value_template": moved, "device_class": "problem"}
        out.append(Entity("binary_sensor", "view_moved", {**config, "entity_category": "diagnostic"}))
    if light_check:
        unlike = "{{ 'ON' if (value_json.source | default({})).light_off | default(0) == 1 else 'OFF' }}"
        config = {"name": "Light unlike training", "state_topic": topic_prefix + "stats", "value_template": unlike, "device_class": "problem"}
        out.append(Entity("binary_sensor", "light_changed", {**config, "entity_category": "diagnostic"}))
    return out + _diagnostics(topic_prefix + "stats")


def _diagnostics(stats: str) -> list[Entity]:
    """From the retained stats message (edge/daemon/stats.py keys, plus the sink's spool keys, `ts`, `model_sha256`).

    One table of seven entities, each a handful of lines: longer than 50 lines, but one list to read."""
    measurement = {"state_class": "measurement", "entity_category": "diagnostic"}
    other = {"entity_category": "diagnostic"}
    return [
        _sensor(
            "fps",
            "Frames per second",
            stats,
            "{{ value_json.fps | default(None) }}",
            unit_of_measurement="fps",
            icon="mdi:speedometer",
            **measurement,
        ),
        _sensor(
            "inference_ms",
            "Inference p50",
            stats,
            "{{ (value_json.inference_ms | default({})).p50 | default(None) }}",
            unit_of_measurement="ms",
            device_class="duration",
            **measurement,
        ),
        # `dropped` counts since the daemon started: total_increasing treats a restart as a reset.
        _sensor(
            "dropped",
            "Dropped frames",
            stats,
            "{{ value_json.dropped | default(None) }}",
            icon="mdi:image-broken-variant",
            state_class="total_increasing",
            **other,
        ),
        _sensor(
            "spool_depth",
            "Spool depth",
            stats,
            "{{ value_json.spool_depth | default(None) }}",
            unit_of_measurement="records",
            icon="mdi:tray-full",
            **measurement,
        ),
        _sensor(
            "cpu_temp",
            "CPU temperature",
            stats,
            "{{ value_json.cpu_temp_c | default(None) }}",
            unit_of_measurement="°C",
            device_class="temperature",
            **measurement,
        ),
        # "unknown" is Home Assistant's own unknown state (before the first record names the model).
        _sensor(
            "model_sha",
            "Model sha256",
            stats,
            "{{ (value_json.model_sha256 | default('unknown', true))[:12] }}",
            icon="mdi:fingerprint",
            **other,
        ),
        _sensor("last_seen", "Last seen", stats, "{{ value_json.ts | default(None) }}", device_class="timestamp", **other),
    ]


def entity_id_keys(component: str, object_id: str) -> dict[str, str]:
    """The entity id asked for, in both of Home Assistant's keys: `object_id` (up to 2026.3; 2026.4 drops
    it silently) and `default_entity_id` (from 2025.10, which prefers it). Both give the same id, e.g.
    sensor.mnv1_edge_cam_answer, on every release (tests/test_homeassistant_releases.py runs 2024.3.3
    and 2026.2.3): the default_entity_id is the object id slugified as Home Assistant does."""
    return {"object_id": object_id, "default_entity_id": f"{component}.{re.sub(r'[^a-z0-9]+', '_', object_id.lower()).strip('_')}"}


def discovery_messages(
    discovery_prefix: str,
    device_id: str,
    topic_prefix: str,
    *,
    answers: Sequence[str] = (),
    snapshots: bool = False,
    view_check: bool = False,
    light_check: bool = False,
) -> list[tuple[str, str]]:
    """(config topic, retained JSON payload) for every entity; availability on each one."""
    node = node_id(device_id)
    common = {
        "availability_topic": topic_prefix + "availability",
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": {
            "identifiers": [node],
            "name": f"mnv1-edge {device_id}",
            "manufacturer": "mnv1-edge",
            "model": "MobileNet v1 0.25/128 classifier",
            "sw_version": __version__,
        },
        "origin": {"name": "mnv1-edge", "sw_version": __version__},
    }
    messages = []
    for entity in entities(topic_prefix, answers=answers, snapshots=snapshots, view_check=view_check, light_check=light_check):
        ids = {"unique_id": f"{node}_{entity.key}", **entity_id_keys(entity.component, f"{node}_{entity.key}")}
        payload = json.dumps({**entity.config, **common, **ids}, separators=(",", ":"), ensure_ascii=False)
        messages.append((config_topic(discovery_prefix, device_id, entity), payload))
    return messages
