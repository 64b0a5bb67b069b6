"""One real daemon's stats report read by its three consumers: Prometheus' parser, Home Assistant's templates, `fleet`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from edge import paths
from edge.fleet.state import Fleet
from edge.throttle import FirmwareFlags
from tests.support import ha_schema
from tests.support.broker import Mosquitto
from tests.support.daemon import EXE, base_config, write_config
from tests.support.mqtt_clients import Collector, wait_until

PREFIX = "mnv1-edge/cam/"
STATS = PREFIX + "stats"
NODE = "homeassistant/sensor/mnv1_edge_cam/{}/config"
# The Raspberry Pi firmware cannot exist here: a vcgencmd that answers as raspberrypi/utils'
# vcgencmd.c prints the gencmd result ("throttled=0x50005": under-voltage and throttled, now and since boot).
VCGENCMD = '#!/bin/sh\n[ "$1" = get_throttled ] && echo "throttled=0x50005" || exit 255\n'
# What the stats message carried before the report was typed (the engine's kernels among them), and `throttled` now.
WIRE_KEYS = {
    *("device_id", "instance", "version", "sink_uptime_s", "ts", "model_sha256", "window_s", "last_frame_age_s", "uptime_s"),
    *("fps", "frames", "published", "inference_ms", "latency_ms", "cpu_temp_c", "dropped", "source", "file", "mqtt", "prometheus"),
    *("stalled", "stalls", "stats_interval_s", "heartbeat_s", "kernels", "kernel_fallback", "throttled"),
}


def metrics(path: Path) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Sample name -> {extra labels: value}, through prometheus_client's own parser."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(path.read_text()):
        for s in family.samples:
            extra = tuple(sorted((k, v) for k, v in s.labels.items() if k not in ("device_id", "model_sha")))
            out.setdefault(s.name, {})[extra] = s.value
    return out


def matched_report(proc: subprocess.Popen[str], collector: Collector, prom: Path) -> tuple[dict[str, Any], dict[str, Any], bytes, float]:
    """(the last stats message, the metrics of the same report, that message's bytes, when the daemon
    was stopped): the daemon is stopped (SIGSTOP) after a stats message and the .prom file read; the
    same report when the two carry the same uptime, else it runs on to the next message."""
    seen = 0
    for _ in range(10):
        wait_until(lambda seen=seen: sum(t == STATS for t, _ in collector.messages) > seen, 20, "a stats message")  # type: ignore[misc]
        proc.send_signal(signal.SIGSTOP)
        stopped = time.time()
        with collector.lock:
            stats = [p for t, p in collector.messages if t == STATS]
        seen = len(stats)
        payload = json.loads(stats[-1])
        # The MQTT sink reports before the Prometheus one: the first message can come before the file.
        found = metrics(prom) if prom.exists() else {}
        if found and found["mnv1_edge_uptime_seconds"][()] == payload["uptime_s"]:
            return payload, found, stats[-1], stopped
        proc.send_signal(signal.SIGCONT)
    raise AssertionError("no stats message matched the metrics file in 10 tries")


@pytest.mark.slow
def test_a_real_daemons_report_reads_the_same_in_prometheus_home_assistant_and_fleet(tmp_path: Path, shared: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "vcgencmd").write_text(VCGENCMD)
    (bin_dir / "vcgencmd").chmod(0o755)
    prom = tmp_path / "metrics" / "mnv1-edge.prom"
    prom.parent.mkdir()
    with Mosquitto(tmp_path / "broker") as broker:
        data = base_config(tmp_path, paths.default_model(), fps=20.0)
        data["device_id"] = "cam"
        data["sinks"]["mqtt"] = {"enabled": True, "port": broker.port, "spool": {"path": str(tmp_path / "spool")}, "stats_interval_s": 1.0}
        data["sinks"]["mqtt"]["homeassistant"] = {"enabled": True}
        data["sinks"]["prometheus"] = {"enabled": True, "path": str(prom)}
        config = write_config(tmp_path / "c.toml", data)
        collector = Collector(broker.port, "#", "stats-report-test")
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
        proc = subprocess.Popen([EXE, "run", "--config", str(config)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            payload, found, raw, stopped = matched_report(proc, collector, prom)
            with collector.lock:
                messages = list(collector.messages)
        finally:
            proc.send_signal(signal.SIGCONT)
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=30)
            collector.stop()
    assert proc.returncode == 0, stderr[-3000:]
    assert set(payload) - {k for k in payload if k.startswith(("spool_", "mqtt_"))} == WIRE_KEYS

    # Prometheus: the textfile of the same report.
    assert found["mnv1_edge_frames_total"][()] == payload["frames"] > 0
    assert found["mnv1_edge_published_total"][()] == payload["published"] > 0
    assert found["mnv1_edge_dropped_frames_total"][()] == payload["dropped"] == payload["source"]["dropped"]
    assert found["mnv1_edge_fps"][()] == payload["fps"] and found["mnv1_edge_stalled_events_total"][()] == payload["stalls"] == 0
    assert found["mnv1_edge_spool_depth"][()] == payload["mqtt"]["spool_depth"]
    assert found["mnv1_edge_kernel_fallback"][()] == payload["kernel_fallback"] == 0 and payload["kernels"] == "xnnpack"
    assert found["mnv1_edge_sink_write_errors_total"] == {(("sink", name),): 0 for name in ("file", "mqtt", "prometheus")}
    assert payload["throttled"] == 0x50005  # the firmware's flags, from the fake vcgencmd
    flags = {labels[0][1]: value for labels, value in found["mnv1_edge_throttled"].items()}
    assert flags["under_voltage"] == flags["throttled"] == flags["under_voltage_occurred"] == flags["throttled_occurred"] == 1
    assert flags["arm_frequency_capped"] == flags["soft_temperature_limit_occurred"] == 0
    if payload["cpu_temp_c"] is not None:
        assert found["mnv1_edge_cpu_temperature_celsius"][()] == payload["cpu_temp_c"]
    assert "throttled 0x50005" in stderr and "; mqtt: spool depth" in stderr  # the journal line of the same reports

    # Home Assistant: the announced templates, rendered by its own engine on that message.
    configs = sorted((t, p.decode()) for t, p in messages if t.startswith("homeassistant/") and t.endswith("/config"))
    report = ha_schema.check(configs, samples={STATS: [raw]})
    assert all(v.clean for v in report.verdicts), [(v.topic, v.error, v.ignored, v.rendered) for v in report.verdicts if not v.clean]
    got = {key: report.by_topic()[NODE.format(key)].rendered["value_template"][0]["value"] for key in ("fps", "dropped", "spool_depth", "model_sha")}
    assert float(got["fps"]) == payload["fps"] and int(got["dropped"]) == payload["dropped"]
    assert int(got["spool_depth"]) == payload["spool_depth"] and got["model_sha"] == payload["model_sha256"][:12]
    last_seen = report.by_topic()[NODE.format("last_seen")].rendered["value_template"][0]["value"]
    assert last_seen == payload["ts"]

    # fleet: every message the daemon published, read as another device's, judged when it was stopped.
    fleet = Fleet("mnv1-edge")
    for topic, body in messages:
        fleet.handle(topic, body, False, stopped)
    [row] = fleet.rows(stopped)
    assert (row.device_id, row.status, row.version) == ("cam", "online", payload["version"])
    assert (row.fps, row.dropped, row.spool_depth, row.spool_dropped) == (payload["fps"], payload["dropped"], payload["spool_depth"], 0)
    assert row.inference_p50_ms == payload["inference_ms"]["p50"] and row.model_sha == payload["model_sha256"]


def test_the_firmware_flags_come_from_vcgencmd_else_sysfs_and_a_machine_without_either_is_asked_once(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    vcgencmd = tmp_path / "vcgencmd"
    vcgencmd.write_text(f'#!/bin/sh\necho x >> {calls}\necho "throttled=0x50000"\n')
    vcgencmd.chmod(0o755)
    sysfs = tmp_path / "get_throttled"
    assert FirmwareFlags(str(vcgencmd), sysfs).read() == (0x50000, "vcgencmd get_throttled")
    sysfs.write_text("20002\n")  # the kernel's sprintf("%x\n")
    assert FirmwareFlags(str(tmp_path / "none"), sysfs).read() == (0x20002, str(sysfs))
    # A vcgencmd that cannot reach the firmware (the unit's device allow-list has no /dev/vcio): the sysfs file.
    broken = tmp_path / "broken"
    broken.write_text('#!/bin/sh\necho "Can\'t open device file: /dev/vcio"\nexit 255\n')
    broken.chmod(0o755)
    flags = FirmwareFlags(str(broken), sysfs)
    assert flags.read() == (0x20002, str(sysfs)) and flags.read() == (0x20002, str(sysfs))
    # Not a Pi: nothing answers, and nothing is asked again.
    sysfs.unlink()
    nothing = FirmwareFlags(str(vcgencmd), sysfs)
    vcgencmd.write_text(f"#!/bin/sh\necho x >> {calls}\nexit 1\n")
    calls.unlink()
    assert nothing.read() is None and nothing.read() is None and nothing.read() is None
    assert calls.read_text().count("x") == 1
