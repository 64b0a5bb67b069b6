"""Home Assistant discovery: every payload through Home Assistant's own discovery code, and the sink against a real mosquitto."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from edge.config import MqttSinkConfig, parse
from edge.model.engine import Prediction
from edge.record import Record
from edge.sinks.mqtt import homeassistant
from edge.sinks.mqtt.sink import MqttSink
from edge.stats import Percentiles, SourceCounters, SourceReport, StatsReport, Window
from tests.support import ha_core, ha_schema
from tests.support.broker import Mosquitto
from tests.support.mqtt_clients import wait_until

PREFIX = "mnv1-edge/cam/"
RECORDS, STATS = PREFIX + "classification", PREFIX + "stats"
NODE = "homeassistant/{}/mnv1_edge_cam/{}/config"
OWN_CONFIGS = "homeassistant/+/mnv1_edge_cam/+/config"
DIAGNOSTICS = {"fps", "inference_ms", "dropped", "spool_depth", "cpu_temp", "model_sha", "last_seen"}

# Records as consumers get them: schema v2 with groups, v2 below the threshold, and v1 (no answer).
V2 = {"v": 2, "seq": 7, "ts": "2026-11-29T08:00:00.000Z", "answer": "bird", "top_k": [{"class_index": 12, "label": "house finch", "score": 0.5}]}
V2 |= {"groups": [{"name": "bird", "score": 0.81}, {"name": "dog", "score": 0.1}]}
V2_NONE = {"v": 2, "seq": 8, "ts": "2026-11-29T08:00:01.000Z", "answer": "none", "groups": [{"name": "dog", "score": 0.2}], "top_k": []}
V1 = {"v": 1, "seq": 9, "ts": "2026-11-29T08:00:02.000Z", "top_k": [{"class_index": 282, "label": "tiger cat", "score": 0.75}]}
SAMPLE_STATS = {"fps": 9.5, "inference_ms": {"p50": 3.1, "p95": 4.2}, "dropped": 2, "spool_depth": 0, "cpu_temp_c": None}
SAMPLE_STATS |= {"ts": "2026-11-29T08:00:00.000Z", "model_sha256": "ab" * 32}


def rendered(verdict: ha_schema.Verdict, key: str = "value_template") -> list[Any]:
    return [r["value"] for r in verdict.rendered[key]]


# The newest Home Assistant on Python 3.11 and the newest on Python 3.13 (a chroot of Debian trixie: root only).
RELEASES = ("2024.3.3", "2026.2.3")


@pytest.fixture(params=RELEASES)
def release(request: pytest.FixtureRequest) -> str:
    version = str(request.param)
    if version != "2024.3.3":
        if os.geteuid() != 0:
            pytest.skip(f"Home Assistant {version} runs on trixie's Python 3.13 in a chroot: root only (make test runs as root)")
        try:
            ha_schema.release(version)
        except ha_schema.HaVenvMissing as exc:
            pytest.fail(str(exc))
    return version


@pytest.mark.slow
def test_every_discovery_payload_is_accepted_by_home_assistant(release: str) -> None:
    answers = ("bird", "dog", 'say "cheese"', "say _cheese_")
    messages = homeassistant.discovery_messages("homeassistant", "cam", PREFIX, answers=answers, snapshots=True, view_check=True, light_check=True)
    moved = {**SAMPLE_STATS, "source": {"name": "cam", "view_off": 1, "view_shift_px": 5, "light_off": 0, "light_luma": 97}}
    unlit = {"fps": 1.0, "source": {"name": "cam", "light_off": 1, "light_luma": 31, "light_changed": 1}}
    samples = {RECORDS: [json.dumps(r) for r in (V2, V2_NONE, V1)], STATS: [json.dumps(SAMPLE_STATS), json.dumps(unlit), json.dumps(moved)]}
    report = ha_schema.check(messages, samples=samples, version=release)

    assert report.ha_version == release
    bad = [(v.topic, v.outcome, v.error, v.ignored, v.rendered) for v in report.verdicts if not v.clean]
    assert not bad, bad
    # default_entity_id is known from 2025.10 on; 2024.3.3 drops it (and uses object_id: the same id)
    assert {tuple(v.ignored) for v in report.verdicts} == {("default_entity_id",) if ha_core.older(release, "2025.10") else ()}
    got = report.by_topic()
    keys = {(v.component, v.topic.split("/")[3]) for v in report.verdicts}
    expected = {("sensor", "answer"), ("sensor", "score"), ("image", "snapshot"), *(("sensor", k) for k in DIAGNOSTICS)}
    expected |= {("binary_sensor", k) for k in ("answer_bird", "answer_dog", "answer_say__cheese_", "view_moved", "light_changed")}
    assert expected < keys and len(keys) == len(messages) == len(expected) + 1  # the two "cheese" names kept apart
    for v in report.verdicts:
        config = v.config or {}
        assert config["availability_topic"] == PREFIX + "availability" and config["payload_not_available"] == "offline"
        assert config["device"]["identifiers"] == ["mnv1_edge_cam"]
        assert (config.get("entity_category") == "diagnostic") == (v.topic.split("/")[3] in {*DIAGNOSTICS, "view_moved", "light_changed"})
    assert len({json.loads(p)["unique_id"] for _, p in messages}) == len(messages)

    # The templates as Home Assistant renders them: the answer falls back to the top-1 label for v1.
    assert rendered(got[NODE.format("sensor", "answer")]) == ["bird", "none", "tiger cat"]
    assert rendered(got[NODE.format("sensor", "score")]) == ["81.0", "None", "75.0"]  # "None": HA's unknown
    assert rendered(got[NODE.format("binary_sensor", "answer_bird")]) == ["ON", "OFF", "OFF"]
    assert rendered(got[NODE.format("binary_sensor", "answer_say__cheese_")]) == ["OFF", "OFF", "OFF"]
    attributes = [json.loads(a) for a in rendered(got[NODE.format("sensor", "answer")], "json_attributes_template")]
    assert attributes[0]["groups"][0] == {"name": "bird", "score": 0.81} and attributes[2]["top_k"][0]["label"] == "tiger cat"
    stats = {k: rendered(got[NODE.format("sensor", k)]) for k in DIAGNOSTICS}
    assert stats == {
        "fps": ["9.5", "1.0", "9.5"],
        "inference_ms": ["3.1", "None", "3.1"],
        "dropped": ["2", "None", "2"],
        "spool_depth": ["0", "None", "0"],
        "cpu_temp": ["None", "None", "None"],
        "model_sha": ["abababababab", "unknown", "abababababab"],
        "last_seen": ["2026-11-29T08:00:00.000Z", "None", "2026-11-29T08:00:00.000Z"],
    }
    assert rendered(got[NODE.format("binary_sensor", "view_moved")]) == ["OFF", "OFF", "ON"]
    assert rendered(got[NODE.format("binary_sensor", "light_changed")]) == ["OFF", "ON", "OFF"]
    image = got[NODE.format("image", "snapshot")].config or {}
    assert image["image_topic"] == PREFIX + "snapshot" and image["content_type"] == "image/jpeg"


@pytest.mark.slow
def test_a_name_with_quotes_is_matched_exactly(release: str) -> None:
    messages = homeassistant.discovery_messages("homeassistant", "cam", PREFIX, answers=('say "cheese"',))
    record = json.dumps({**V2, "answer": 'say "cheese"'})
    report = ha_schema.check(messages, samples={RECORDS: [record]}, version=release)
    verdict = report.by_topic()[NODE.format("binary_sensor", "answer_say__cheese_")]
    assert verdict.clean and rendered(verdict) == ["ON"]


@pytest.mark.slow
def test_wrong_payloads_are_rejected(release: str) -> None:
    """The validator can fail: Home Assistant's own schema refuses these, or silently drops a key."""
    topic, payload = homeassistant.discovery_messages("homeassistant", "cam", PREFIX)[0]
    good = json.loads(payload)
    no_state_topic = {k: v for k, v in good.items() if k != "state_topic"}
    cases = {
        "no_state_topic": ("sensor", no_state_topic),
        "bad_category": ("sensor", {**good, "entity_category": "primary"}),
        "bad_template": ("sensor", {**good, "value_template": "{{ value_json.answer "}),
        "typo": ("sensor", {**good, "value_templat": good["value_template"]}),
        "image_without_topic": ("image", {**good, "content_type": "image/jpeg"}),
        "bad_device_class": ("binary_sensor", {**good, "device_class": "bird"}),
    }
    messages = [(f"homeassistant/{component}/mnv1_edge_cam/{key}/config", json.dumps(p)) for key, (component, p) in cases.items()]
    messages.append(("homeassistant/sensor/mnv1_edge_cam/a b/config", payload))  # a space in the object id
    report = ha_schema.check([(topic, payload), *messages], version=release)
    verdicts = report.by_topic()
    assert verdicts[topic].clean
    outcomes = {
        t.split("/")[3]: (v.outcome, v.clean, v.error or "", [k for k in v.ignored if k not in ha_schema.LATER_KEYS])
        for t, v in verdicts.items()
        if t != topic
    }
    assert not any(clean for _, clean, _, _ in outcomes.values())
    assert outcomes["no_state_topic"][0] == "rejected" and "state_topic" in outcomes["no_state_topic"][2]
    assert outcomes["bad_category"][0] == "rejected" and "entity_category" in outcomes["bad_category"][2]
    assert outcomes["bad_template"][0] == "rejected" and "invalid template" in outcomes["bad_template"][2]
    assert outcomes["typo"][0] == "accepted" and outcomes["typo"][3] == ["value_templat"]
    assert outcomes["image_without_topic"][0] == "rejected" and "image_topic" in outcomes["image_without_topic"][2]
    assert outcomes["bad_device_class"][0] == "rejected" and "device_class" in outcomes["bad_device_class"][2]
    assert outcomes["a b"][0] == "not_discovered" and "illegal discovery topic" in outcomes["a b"][2]


# --- the sink against a real broker --------------------------------------------------------------


class Subscriber:
    """Collects (topic, payload, retain) on a filter; a fresh one sees what the broker retains."""

    def __init__(self, port: int, topic: str) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.topic = topic
        self.ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, *_: (c.subscribe(self.topic, qos=1), self.ready.set())
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        assert self.ready.wait(10), "subscriber did not connect"

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((message.topic, message.payload, bool(message.retain)))

    def configs(self) -> dict[str, bytes]:
        """The latest payload of each discovery config topic."""
        with self.lock:
            return {t: p for t, p, _ in self.messages if t.endswith("/config")}

    def count(self, topic: str) -> int:
        with self.lock:
            return sum(t == topic for t, _, _ in self.messages)

    def last(self, topic: str) -> tuple[bytes, bool] | None:
        with self.lock:
            found = [(p, r) for t, p, r in self.messages if t == topic]
        return found[-1] if found else None

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def retained(port: int, topic: str = "#", settle: str = "") -> dict[str, bytes]:
    """What the broker retains under `topic`: a fresh subscriber, then a marker message to know it has all of it."""
    marker = settle or f"test/marker/{time.monotonic_ns()}"
    sub = Subscriber(port, topic)
    try:
        sub.client.subscribe(marker, qos=1)
        sub.client.publish(marker, b"x", qos=1).wait_for_publish(5)
        wait_until(lambda: sub.count(marker) > 0, 10, "the marker")
        with sub.lock:
            return {t: p for t, p, r in sub.messages if r}
    finally:
        sub.stop()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    with Mosquitto(tmp_path / "broker") as b:
        yield b


def sink_config(port: int, spool: Path, **mqtt_keys: Any) -> MqttSinkConfig:
    data = {"enabled": True, "port": port, "reconnect_max_s": 2.0, "spool": {"path": str(spool)}, **mqtt_keys}
    config: MqttSinkConfig = parse({"device_id": "cam", "sinks": {"mqtt": data}}).sinks.mqtt
    return config


def record(seq: int) -> Record:
    now = time.time()
    return Record(seq, now, now, "cam", "synthetic", (Prediction(281, "tabby", 0.75),), 2.5, "cd" * 32)


@pytest.mark.slow
def test_the_sink_announces_to_home_assistant_and_resends_on_online(broker: Mosquitto, tmp_path: Path) -> None:
    config = sink_config(broker.port, tmp_path / "spool", stats_interval_s=0.5, homeassistant={"enabled": True})
    sink = MqttSink(config, "cam", answers=("bird", "dog"), snapshots=True)
    sub = Subscriber(broker.port, "#")
    sink.open()
    try:
        expected = {t for t, _ in homeassistant.discovery_messages("homeassistant", "cam", PREFIX, answers=("bird", "dog"), snapshots=True)}
        sink.write(record(1))
        window = Window("2026-11-29T08:00:00.000Z", 1.0, 0.1, 2.0, 9.5, 10, 1, Percentiles(3.0, 4.0), Percentiles(9.0, 12.0), 51.2)
        sink.report(StatsReport(window, SourceReport("synthetic:seed=0", 11, 1, SourceCounters(11)), {}))
        wait_until(lambda: set(sub.configs()) == expected and sub.last(STATS) and sub.last(RECORDS), 15, "discovery, stats and a record")
        # Home Assistant's verdict on what actually went over the wire, templates fed the real messages.
        samples = {RECORDS: [sub.last(RECORDS)[0]], STATS: [sub.last(STATS)[0]]}  # type: ignore[index]
        report = ha_schema.check(sorted((t, p.decode()) for t, p in sub.configs().items()), samples=samples)
        assert all(v.clean for v in report.verdicts), [(v.topic, v.error, v.ignored, v.rendered) for v in report.verdicts if not v.clean]
        got = report.by_topic()
        assert rendered(got[NODE.format("sensor", "answer")]) == ["tabby"]  # a v1 record: the top-1 label
        assert rendered(got[NODE.format("sensor", "model_sha")]) == ["cdcdcdcdcdcd"]
        assert rendered(got[NODE.format("sensor", "cpu_temp")]) == ["51.2"]
        assert rendered(got[NODE.format("sensor", "last_seen")])[0].endswith("Z")

        # The stats are retained: a subscriber that comes later sees the last ones at once.
        late = retained(broker.port, STATS)
        assert json.loads(late[STATS])["fps"] == 9.5

        # Home Assistant restarted: every config is published again.
        before = sub.count(NODE.format("sensor", "answer"))
        sub.client.publish("homeassistant/status", "online", qos=1).wait_for_publish(5)
        wait_until(lambda: all(sub.count(t) >= before + 1 for t in expected), 10, "discovery re-sent")
    finally:
        sink.close()
        sub.stop()


def run_sink(port: int, spool: Path, answers: tuple[str, ...], snapshots: bool, enabled: bool = True) -> None:
    """One daemon run: connect, announce (and remove what is stale), stop."""
    config = sink_config(port, spool, homeassistant={"enabled": enabled})
    sink = MqttSink(config, "cam", answers=answers, snapshots=snapshots)
    messages = homeassistant.discovery_messages("homeassistant", "cam", PREFIX, answers=answers, snapshots=snapshots)
    announced = {t for t, _ in messages} if enabled else set()
    sink.open()
    try:

        def settled() -> bool:
            return set(retained(port, OWN_CONFIGS)) == announced

        wait_until(settled, 15, f"exactly {sorted(announced)} retained")
    finally:
        sink.close()


def test_an_entity_disabled_in_the_config_is_removed(broker: Mosquitto, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    other = ("homeassistant/sensor/mnv1_edge_cam2/answer/config", b'{"name": "another device"}')
    broker_client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    broker_client.connect("127.0.0.1", broker.port)
    broker_client.loop_start()
    broker_client.publish(*other, qos=1, retain=True).wait_for_publish(5)
    broker_client.disconnect()
    broker_client.loop_stop()

    run_sink(broker.port, spool, ("bird", "dog"), snapshots=True)
    sub = Subscriber(broker.port, "homeassistant/#")
    try:
        # The next start has no `dog` in its answers and no snapshots: both entities get an empty
        # retained config (Home Assistant removes them), the rest stays announced.
        run_sink(broker.port, spool, ("bird",), snapshots=False)
        gone = {NODE.format("binary_sensor", "answer_dog"), NODE.format("image", "snapshot")}
        wait_until(lambda: {t for t, p in sub.configs().items() if p == b""} == gone, 10, f"empty configs on {sorted(gone)}")
        # Discovery turned off: every entity of this device goes; another device's stays.
        run_sink(broker.port, spool, ("bird",), snapshots=False, enabled=False)
        assert retained(broker.port, OWN_CONFIGS) == {}
    finally:
        sub.stop()
    assert retained(broker.port, "homeassistant/#") == {other[0]: other[1]}  # another device's config is not ours


def test_the_validator_needs_its_venv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(ha_schema, "HA_VENV", tmp_path / "none")
    with pytest.raises(ha_schema.HaVenvMissing, match="make ha-venv"):
        ha_schema.check([])
