"""The Prometheus textfile sink, read back with prometheus_client's own parser; the stats line's sink counters."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from edge import paths
from edge.config import ConfigError, PrometheusSinkConfig, parse
from edge.daemon.stats import format_line
from edge.errors import SinkError
from edge.model.engine import Prediction
from edge.record import Record
from edge.sinks import sink_specs
from edge.sinks.prometheus import PrometheusSink
from edge.stats import Percentiles, SinkCounters, SnapshotCounters, SourceCounters, SourceReport, SpoolCounters, StatsReport, Window
from tests.support.daemon import EXE, base_config, write_config

SHA = "ab" * 32
LABELS = {"device_id": "cam-1", "model_sha": SHA[:12]}


def record(seq: int, label: str, inference_ms: float, latency_s: float) -> Record:
    now = time.time()
    fields: dict[str, Any] = {
        "seq": seq,
        "ts": now,
        "frame_ts": now - latency_s,
        "device_id": "cam-1",
        "source": "synthetic",
        "top_k": (Prediction(1, label, 0.9),),
        "inference_ms": inference_ms,
        "model_sha256": SHA,
    }
    if "answer" in {f.name for f in dataclasses.fields(Record)}:  # record schema v2
        fields["answer"] = label
    return Record(**fields)


def stats(window: dict[str, Any] | None = None, **extra: Any) -> StatsReport:
    """A report as the daemon builds it: its own figures, the source's, each sink's (`window`: changes to the window's)."""
    spool = SpoolCounters(depth=3, bytes=1234, dropped_size=5, dropped_age=1, write_errors=2)
    mqtt = {**spool.to_dict(), "mqtt_publish_errors": 1, "mqtt_connected": True}
    report = StatsReport(
        Window("2026-11-29T08:00:00.000Z", 60.0, 0.1, 12.5, 9.5, 120, 4, Percentiles(2.1, 3.0), Percentiles(20.0, 40.0), 51.5),
        SourceReport("picamera2:0", 127, 7, SourceCounters(127, reopens=2, errors=1)),
        {
            "file": SinkCounters({"written": 4, "errors": 1, "rotations": 0, "rotate_errors": 0, "bytes": 900}, errors=1),
            "mqtt": SinkCounters(mqtt, lost=8, errors=3, spool=spool),
        },
    )
    return replace(report, window=replace(report.window, **(window or {})), **extra)


def families(path: Path) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(path.read_text())}


def value(fams: dict[str, Any], name: str, sample: str | None = None, **labels: str) -> float:
    """The one sample of family `name` (sample name `sample`, default the family's) with these extra labels."""
    want = {**LABELS, **labels}
    found = [s.value for s in fams[name].samples if s.name == (sample or name) and s.labels == want]
    assert len(found) == 1, (name, sample, labels, fams[name].samples)
    return float(found[0])


@pytest.fixture
def sink(tmp_path: Path) -> PrometheusSink:
    sink = PrometheusSink(PrometheusSinkConfig(enabled=True, path=str(tmp_path / "mnv1-edge.prom")), "cam-1")
    sink.open()
    return sink


def test_counters_histograms_and_labels_parse_with_prometheus_client(sink: PrometheusSink, tmp_path: Path) -> None:
    answers = ["cat", "cat", "dog", "dog", "cat"]  # two changes
    for i, (label, ms) in enumerate(zip(answers, (1.5, 2.5, 2.5, 40.0, 700.0), strict=True)):
        sink.write(record(i, label, ms, latency_s=0.04))
    sink.report(stats({"throttled": 0x50005}))
    fams = families(tmp_path / "mnv1-edge.prom")
    assert fams["mnv1_edge_frames"].type == "counter" and value(fams, "mnv1_edge_frames", "mnv1_edge_frames_total") == 120
    assert value(fams, "mnv1_edge_published", "mnv1_edge_published_total") == 4
    assert value(fams, "mnv1_edge_dropped_frames", "mnv1_edge_dropped_frames_total") == 7
    assert value(fams, "mnv1_edge_camera_reopens", "mnv1_edge_camera_reopens_total") == 2
    assert value(fams, "mnv1_edge_stalled_events", "mnv1_edge_stalled_events_total") == 0  # not in these stats: 0
    assert value(fams, "mnv1_edge_frozen_events", "mnv1_edge_frozen_events_total") == 0
    assert value(fams, "mnv1_edge_answer_changes", "mnv1_edge_answer_changes_total") == 2
    assert value(fams, "mnv1_edge_fps") == 9.5 and value(fams, "mnv1_edge_cpu_temperature_celsius") == 51.5

    inference = fams["mnv1_edge_inference_seconds"]
    assert inference.type == "histogram"
    assert value(fams, "mnv1_edge_inference_seconds", "mnv1_edge_inference_seconds_count") == 5
    assert value(fams, "mnv1_edge_inference_seconds", "mnv1_edge_inference_seconds_sum") == pytest.approx(0.7465)
    buckets = {s.labels["le"]: s.value for s in inference.samples if s.name.endswith("_bucket")}
    assert buckets["0.002"] == 1 and buckets["0.003"] == 3 and buckets["0.05"] == 4 and buckets["0.5"] == 4 and buckets["+Inf"] == 5
    latency = {s.labels["le"]: s.value for s in fams["mnv1_edge_latency_seconds"].samples if s.name.endswith("_bucket")}
    assert latency["0.03"] == 0 and latency["0.05"] == 5  # ts - frame_ts = 40 ms for each record

    errors = {s.labels["sink"]: s.value for s in fams["mnv1_edge_sink_write_errors"].samples}
    assert errors == {"file": 1, "mqtt": 3}  # mqtt: one publish error + two spool write errors
    assert value(fams, "mnv1_edge_spool_depth") == 3 and value(fams, "mnv1_edge_spool_bytes") == 1234
    drops = {s.labels["reason"]: s.value for s in fams["mnv1_edge_spool_dropped"].samples}
    assert drops == {"size": 5, "age": 1, "full": 0}
    flags = {s.labels["flag"]: s.value for s in fams["mnv1_edge_throttled"].samples}
    assert flags["under_voltage"] == 1 and flags["throttled"] == 1 and flags["arm_frequency_capped"] == 0
    assert flags["under_voltage_occurred"] == 1 and flags["throttled_occurred"] == 1
    assert sink.stats() == SinkCounters({"written": 1, "errors": 0})
    assert "mnv1_edge_view_off" not in fams and "mnv1_edge_light_off" not in fams  # the stock model: no such checks, no such metrics


def test_a_scene_models_view_check_is_exported(sink: PrometheusSink, tmp_path: Path) -> None:
    source = SourceReport("picamera2:0", 127, 0, SourceCounters(127, view_shift_px=5, view_moved=2, view_off=1))
    sink.write(record(0, "cat", 1.5, latency_s=0.04))
    sink.report(stats(source=source))
    fams = families(tmp_path / "mnv1-edge.prom")
    assert value(fams, "mnv1_edge_view_moved", "mnv1_edge_view_moved_total") == 2
    assert value(fams, "mnv1_edge_view_off") == 1 and value(fams, "mnv1_edge_view_shift_pixels") == 5


def test_a_models_light_check_is_exported(sink: PrometheusSink, tmp_path: Path) -> None:
    source = SourceReport("picamera2:0", 127, 0, SourceCounters(127, light_luma=31, light_changed=1, light_off=1))
    sink.write(record(0, "cat", 1.5, latency_s=0.04))
    sink.report(stats(source=source))
    fams = families(tmp_path / "mnv1-edge.prom")
    assert value(fams, "mnv1_edge_light_changed", "mnv1_edge_light_changed_total") == 1
    assert value(fams, "mnv1_edge_light_off") == 1 and value(fams, "mnv1_edge_light_luma") == 31
    assert "mnv1_edge_view_off" not in fams


def test_reports_replace_the_file_whole_and_histograms_accumulate(sink: PrometheusSink, tmp_path: Path) -> None:
    path = tmp_path / "mnv1-edge.prom"
    sink.report(stats())
    fams = families(path)
    # Before the first record the model is not known yet: every sample says so.
    assert {s.labels["model_sha"] for f in fams.values() for s in f.samples} == {"unknown"}
    assert [s.value for s in fams["mnv1_edge_inference_seconds"].samples if s.name.endswith("_count")] == [0]
    first = path.open()  # keeps the first file's inode alive: an in-place rewrite would show through it
    sink.write(record(1, "cat", 2.0, 0.01))
    sink.report(stats({"frames": 130}))
    sink.write(record(2, "cat", 2.0, 0.01))
    sink.report(stats({"frames": 140}))
    fams = families(path)
    assert value(fams, "mnv1_edge_frames", "mnv1_edge_frames_total") == 140
    assert value(fams, "mnv1_edge_inference_seconds", "mnv1_edge_inference_seconds_count") == 2
    with first:
        assert "unknown" in first.read()  # still the first file: the new one was renamed over it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mnv1-edge.prom"]  # no temp file left


def test_no_temperature_or_throttling_in_the_stats_means_no_such_metric(sink: PrometheusSink, tmp_path: Path) -> None:
    sink.report(stats({"cpu_temp_c": None}))
    fams = families(tmp_path / "mnv1-edge.prom")
    assert "mnv1_edge_cpu_temperature_celsius" not in fams and "mnv1_edge_throttled" not in fams
    assert "mnv1_edge_spool_depth" in fams


def test_a_write_failure_is_counted_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "textfile"
    folder.mkdir()
    sink = PrometheusSink(PrometheusSinkConfig(enabled=True, path=str(folder / "m.prom")), "cam-1")
    sink.open()
    sink.report(stats())
    shutil.rmtree(folder)  # node_exporter's folder removed under us (a package purge, a tmpfs not mounted)
    sink.report(stats())
    sink.report(stats())
    assert sink.stats().counters == {"written": 1, "errors": 2}
    assert sum("cannot write Prometheus metrics" in r.message for r in caplog.records) == 1  # once per failing streak
    folder.mkdir()
    sink.report(stats())
    assert sink.stats().counters == {"written": 2, "errors": 2} and (folder / "m.prom").is_file()


def test_a_missing_folder_fails_at_open_naming_the_key(tmp_path: Path) -> None:
    sink = PrometheusSink(PrometheusSinkConfig(enabled=True, path=str(tmp_path / "nope" / "m.prom")), "cam")
    with pytest.raises(SinkError, match=r"folder .*nope does not exist; check sinks.prometheus.path"):
        sink.open()


def test_config_enables_it_and_checks_the_suffix(tmp_path: Path) -> None:
    assert PrometheusSinkConfig().enabled is False
    assert PrometheusSinkConfig().path == "/var/lib/prometheus/node-exporter/mnv1-edge.prom"
    config = parse({"device_id": "cam", "sinks": {"prometheus": {"enabled": True, "path": str(tmp_path / "m.prom")}}})
    assert [s.name for s in sink_specs(config)] == ["file", "prometheus"]
    with pytest.raises(ConfigError, match=r"sinks.prometheus.path: must end in .prom"):
        parse({"sinks": {"prometheus": {"enabled": True, "path": "/tmp/m.txt"}}})


def test_the_stats_line_lists_each_sinks_counters() -> None:
    report = stats()
    line = format_line(replace(report, sinks={**report.sinks, "prometheus": SinkCounters({"written": 3, "errors": 0})}))
    assert "; file: written 4, errors 1, rotations 0, rotate errors 0, bytes 900" in line
    assert "; mqtt: spool depth 3, spool bytes 1234, " in line and "publish errors 1, connected yes" in line
    assert line.endswith("; prometheus: written 3, errors 0")
    assert "source {" in line and "inference_ms" not in line  # the daemon's own dicts are not sinks


@pytest.mark.slow
def test_a_running_daemon_writes_metrics_and_logs_sink_counters(tmp_path: Path, shared: Path) -> None:
    model = paths.default_model()
    data = base_config(tmp_path, model, fps=30.0)
    prom = tmp_path / "metrics" / "mnv1-edge.prom"
    prom.parent.mkdir()
    data["device_id"] = "cam-1"
    data["sinks"]["prometheus"] = {"enabled": True, "path": str(prom)}
    config = write_config(tmp_path / "c.toml", data)
    run = subprocess.run([EXE, "run", "--config", str(config), "--max-frames", "90"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    fams = {f.name: f for f in text_string_to_metric_families(prom.read_text())}
    frames = [s for s in fams["mnv1_edge_frames"].samples if s.name == "mnv1_edge_frames_total"]
    assert len(frames) == 1 and 0 < frames[0].value <= 90
    assert frames[0].labels["device_id"] == "cam-1" and len(frames[0].labels["model_sha"]) == 12
    count = [s.value for s in fams["mnv1_edge_inference_seconds"].samples if s.name.endswith("_count")]
    assert count and count[0] > 0
    assert "file: written" in run.stderr and "prometheus: written" in run.stderr


def test_snapshot_counters_reach_the_metrics_and_the_stats_line(sink: PrometheusSink, tmp_path: Path) -> None:
    snap = SnapshotCounters(saved=4, dropped=2, skipped=1, no_room=3, files=8, bytes=9000)
    sink.write(record(0, "cat", 1.5, latency_s=0.04))  # the model sha label comes from the records
    sink.report(stats(snapshots=snap))
    fams = families(tmp_path / "mnv1-edge.prom")
    assert value(fams, "mnv1_edge_snapshots_saved", "mnv1_edge_snapshots_saved_total") == 4
    assert value(fams, "mnv1_edge_snapshots_bytes") == 9000
    lost = {s.labels["reason"]: s.value for s in fams["mnv1_edge_snapshots_lost"].samples}
    assert lost == {"dropped": 2, "skipped": 1, "no_room": 3, "errors": 0}
    assert "; snapshots: saved 4, dropped 2, skipped 1, no room 3, errors 0, view errors 0, files 8, bytes 9000" in format_line(stats(snapshots=snap))


def test_calls_a_sink_raised_on_count_as_its_errors_and_are_no_sink_of_their_own(sink: PrometheusSink, tmp_path: Path) -> None:
    sink.write(record(0, "cat", 1.5, latency_s=0.04))
    report = stats()
    file = report.sinks["file"]
    raised = replace(report, sinks={**report.sinks, "file": replace(file, errors=file.errors + 2, lost=file.lost + 2, raised=2)})
    sink.report(raised)
    fams = families(tmp_path / "mnv1-edge.prom")
    errors = {s.labels["sink"]: s.value for s in fams["mnv1_edge_sink_write_errors"].samples}
    assert errors == {"file": 3, "mqtt": 3}  # file: its own write error + two raised calls
    assert "sink_errors:" not in format_line(raised) and raised.to_dict()["sink_errors"] == {"file": 2}
