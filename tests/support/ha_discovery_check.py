"""Runs INSIDE the Home Assistant test venv: feeds discovery messages through Home Assistant's own MQTT discovery code.

Input (stdin, JSON): {"discovery_prefix": str, "messages": [{"topic": str, "payload": str}],
"samples": {state topic: [payload, ...]}}. Output (stdout, JSON): {"ha_version": str, "results": [...]},
one result per message: outcome "accepted" | "rejected" | "removal" | "not_discovered", the error,
the keys Home Assistant silently ignored, the validated config, and each template rendered against
every sample payload of its topic (with the warnings Home Assistant's template engine logged).

What runs is Home Assistant's code, not a reading of its docs: the message callback that
homeassistant/components/mqtt/discovery.py `async_start` subscribes (topic matching, supported
components, abbreviation and `~` expansion), then the platform's DISCOVERY_SCHEMA exactly as
mixins.async_setup_entity_entry_helper applies it, then MqttValueTemplate for the templates.
Only the broker subscription is replaced: the subscribe function hands us the callback instead
(`mqtt.async_subscribe` in 2024.3, `async_subscribe_internal` in 2026.2; the few other differences
between the two releases are marked where they are bridged).
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import importlib
import inspect
import json
import logging
import sys
import tempfile
import time
from datetime import datetime, timezone
from typing import Any

import voluptuous as vol
from homeassistant.components.mqtt import discovery
from homeassistant.components.mqtt.models import MqttData, MqttValueTemplate, ReceiveMessage

try:  # 2024.3: in const; later releases: in models
    from homeassistant.components.mqtt.models import DATA_MQTT
except ImportError:
    from homeassistant.components.mqtt.const import DATA_MQTT
from homeassistant.const import __version__ as HA_VERSION
from homeassistant.core import HomeAssistant
from homeassistant.helpers.dispatcher import async_dispatcher_connect, async_dispatcher_send

TEMPLATE_KEYS = ("value_template", "json_attributes_template", "url_template")


class Captured(logging.Handler):
    """Home Assistant explains what it skipped (bad topic, bad JSON) and template trouble in its log."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name}: {record.getMessage()}")

    def take(self) -> list[str]:
        lines, self.lines = self.lines, []
        return lines


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(getattr(value, "template", value))  # Template objects: their source


def ignored_keys(sent: dict[str, Any], validated: dict[str, Any]) -> list[str]:
    """Keys the schema dropped (DISCOVERY_SCHEMA is extra=REMOVE_EXTRA: a typo is silently ignored)."""
    out = [k for k in sent if k not in validated and k != "platform"]
    device = sent.get("device")
    if isinstance(device, dict) and isinstance(validated.get("device"), dict):
        out += [f"device.{k}" for k in device if k not in validated["device"]]
    return out


def render(hass: HomeAssistant, config: dict[str, Any], samples: dict[str, list[str]], log: Captured) -> dict[str, Any]:
    topic = config.get("state_topic") or config.get("json_attributes_topic") or ""
    out: dict[str, Any] = {}
    for key in TEMPLATE_KEYS:
        if key not in config:
            continue
        renders = []
        for payload in samples.get(config.get("json_attributes_topic", topic) if key == "json_attributes_template" else topic, []):
            try:
                value = value_template(config[key], hass).async_render_with_possible_json_value(payload)
                renders.append({"value": jsonable(value), "warnings": log.take()})
            except Exception as exc:  # HA logs these and skips the update: a bug in our template
                renders.append({"error": f"{type(exc).__name__}: {exc}", "warnings": log.take()})
        out[key] = renders
    return out


def value_template(template: Any, hass: HomeAssistant) -> MqttValueTemplate:
    """2024.3 takes hass as an argument; 2026.2 takes it from the template (which validation left without one)."""
    if "hass" in inspect.signature(MqttValueTemplate).parameters:
        return MqttValueTemplate(template, hass=hass)
    template.hass = hass
    return MqttValueTemplate(template)


def done_signal(discovery_hash: tuple[str, str]) -> Any:
    """The "discovery done" signal: one placeholder for the hash in 2024.3, one per part in 2026.2."""
    if str(discovery.MQTT_DISCOVERY_DONE).count("{}") == 1:
        return discovery.MQTT_DISCOVERY_DONE.format(discovery_hash)
    return discovery.MQTT_DISCOVERY_DONE.format(*discovery_hash)


def matches(pattern: str, topic: str) -> bool:
    """MQTT topic filter matching (+ and #), as the broker applies it to our subscriptions."""
    want, have = pattern.split("/"), topic.split("/")
    for i, level in enumerate(want):
        if level == "#":
            return True
        if i >= len(have) or level not in ("+", have[i]):
            return False
    return len(want) == len(have)


def received(topic: str, payload: str, subscribed: str) -> ReceiveMessage:
    """2024.3 stamps messages with a datetime, 2026.2 with a monotonic float."""
    stamp_type = {f.name: f.type for f in dataclasses.fields(ReceiveMessage)}["timestamp"]
    stamp: Any = time.monotonic() if "float" in str(stamp_type) else datetime.now(timezone.utc)
    return ReceiveMessage(topic, payload, 0, True, subscribed, stamp)


async def check(request: dict[str, Any]) -> list[dict[str, Any]]:
    log = Captured()
    ha_log = logging.getLogger("homeassistant")
    ha_log.addHandler(log)
    ha_log.setLevel(logging.WARNING)
    ha_log.propagate = False  # nothing on stderr: the verdicts carry it
    with tempfile.TemporaryDirectory() as config_dir:
        hass = HomeAssistant(config_dir)
        mqtt_data = hass.data[DATA_MQTT] = MqttData(client=None, config=[])  # type: ignore[arg-type]
        if hasattr(mqtt_data, "platforms_loaded"):  # 2026.2 sets a platform up first unless it is loaded
            mqtt_data.platforms_loaded.update(discovery.SUPPORTED_COMPONENTS)
        callbacks: dict[str, Any] = {}

        def subscribe_internal(hass: HomeAssistant, topic: str, callback: Any, qos: int = 0, encoding: str = "utf-8", job_type: Any = None) -> Any:
            callbacks[topic] = callback
            return lambda: None

        async def subscribe(hass: HomeAssistant, topic: str, callback: Any, qos: int = 0, encoding: str = "utf-8") -> Any:
            return subscribe_internal(hass, topic, callback)

        if hasattr(discovery, "async_subscribe_internal"):
            discovery.async_subscribe_internal = subscribe_internal
        else:
            discovery.mqtt.async_subscribe = subscribe
        prefix = request["discovery_prefix"]
        await discovery.async_start(hass, prefix, None)
        log.take()
        seen: list[Any] = []
        for component in discovery.SUPPORTED_COMPONENTS:
            async_dispatcher_connect(hass, discovery.MQTT_DISCOVERY_NEW.format(component, "mqtt"), seen.append)
        results = []
        for message in request["messages"]:
            topic, payload = message["topic"], message["payload"]
            seen.clear()
            # The subscription a real broker would deliver this topic on (none: Home Assistant never sees it).
            sub = next((pattern for pattern in callbacks if matches(pattern, topic)), None)
            if sub is not None:
                callbacks[sub](received(topic, payload, sub))
            await hass.async_block_till_done()
            results.append(validate(hass, topic, payload, list(seen), request.get("samples", {}), log))
            for item in seen:  # forget it, so the next message for the same entity is "new" again
                discovery_hash = item.discovery_data["discovery_hash"]
                mqtt_data.discovery_already_discovered.discard(discovery_hash)
                async_dispatcher_send(hass, done_signal(discovery_hash), None)
            await hass.async_block_till_done()
        await hass.async_stop(force=True)
    return results


def validate(hass: HomeAssistant, topic: str, payload: str, seen: list[Any], samples: dict[str, list[str]], log: Captured) -> dict[str, Any]:
    result: dict[str, Any] = {"topic": topic, "error": None, "ignored": [], "config": None, "rendered": {}}
    if not seen:
        result["outcome"] = "removal" if payload == "" else "not_discovered"
        result["error"] = "; ".join(log.take()) or None
        return result
    discovered = seen[0]
    component = discovered.discovery_data["discovery_hash"][0]
    result["component"] = component
    platform = importlib.import_module(f"homeassistant.components.mqtt.{component}")
    sent = copy.deepcopy(dict(discovered))
    try:
        config = platform.DISCOVERY_SCHEMA(copy.deepcopy(dict(discovered)))
    except vol.Invalid as exc:
        result.update(outcome="rejected", error=str(exc))
        return result
    result.update(outcome="accepted", ignored=ignored_keys(sent, config), config=jsonable(config))
    result["rendered"] = render(hass, config, samples, log)
    return result


def main() -> int:
    request = json.load(sys.stdin)
    results = asyncio.run(check(request))
    json.dump({"ha_version": HA_VERSION, "results": results}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
