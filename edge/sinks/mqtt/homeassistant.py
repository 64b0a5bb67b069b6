"""Home Assistant MQTT discovery: one device with a label sensor and a score sensor."""

from __future__ import annotations

import json
import re

from edge import __version__


def node_id(device_id: str) -> str:
    """Home Assistant accepts only [a-zA-Z0-9_-] in discovery node and object ids."""
    return "mnv1_edge_" + re.sub(r"[^a-zA-Z0-9_-]", "_", device_id)


def status_topic(discovery_prefix: str) -> str:
    """Home Assistant publishes `online` here when it (re)starts: discovery must be re-sent."""
    return f"{discovery_prefix}/status"


def discovery_messages(discovery_prefix: str, device_id: str, topic_prefix: str) -> list[tuple[str, str]]:
    """(config topic, retained JSON payload) for each sensor."""
    node = node_id(device_id)
    device = {
        "identifiers": [node],
        "name": f"mnv1-edge {device_id}",
        "manufacturer": "mnv1-edge",
        "model": "MobileNet v1 0.25/128 classifier",
        "sw_version": __version__,
    }
    common = {
        "state_topic": f"{topic_prefix}classification",
        "availability_topic": f"{topic_prefix}availability",
        "payload_available": "online",
        "payload_not_available": "offline",
        "json_attributes_topic": f"{topic_prefix}classification",
        # top-k as attributes: label/score pairs, plus seq so automations can spot gaps
        "json_attributes_template": "{{ {'top_k': value_json.top_k, 'seq': value_json.seq, 'ts': value_json.ts} | tojson }}",
        "device": device,
    }
    sensors = {
        "label": {
            "name": "Label",
            "icon": "mdi:label-outline",
            "value_template": "{{ value_json.top_k[0].label if value_json.top_k else 'none' }}",
        },
        "score": {
            "name": "Score",
            "icon": "mdi:percent",
            "unit_of_measurement": "%",
            "state_class": "measurement",
            "value_template": "{{ (value_json.top_k[0].score * 100) | round(1) if value_json.top_k else 0 }}",
        },
    }
    return [
        (
            f"{discovery_prefix}/sensor/{node}/{key}/config",
            json.dumps({**common, **extra, "unique_id": f"{node}_{key}", "object_id": f"{node}_{key}"}, separators=(",", ":")),
        )
        for key, extra in sensors.items()
    ]
