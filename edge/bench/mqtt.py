"""MQTT sink benchmark: sustained publish rate through the durable spool, and its disk write amplification."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from edge.config import MqttSinkConfig, SpoolConfig
from edge.errors import SinkError
from edge.model.contract import Prediction
from edge.record import Record


def _disk_write_bytes() -> int | None:
    """Bytes this process caused to be written to storage (charged when pages are dirtied)."""
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _records(count: int) -> list[Record]:
    now = time.time()
    top = tuple(Prediction(281 + i, f"label {i}", round(0.5 / (i + 1), 6)) for i in range(5))  # a realistic top-5 record
    return [Record(seq, now, now, "bench", "synthetic", top, 2.5, "0" * 64) for seq in range(1, count + 1)]


def run_publish_benchmark(records: int, host: str, port: int, spool_dir: Path) -> dict[str, Any]:
    """Write `records` top-5 records as fast as the sink takes them, with QoS 1 and the spool on,
    and time until the broker has acknowledged the last one."""
    from edge.sinks.mqtt.sink import MqttSink

    config = dataclasses.replace(
        MqttSinkConfig(), enabled=True, host=host, port=port, stats_interval_s=0.0, spool=dataclasses.replace(SpoolConfig(), path=str(spool_dir))
    )
    sink = MqttSink(config, "bench")
    batch = _records(records)
    payload_bytes = sum(len(r.to_json().encode()) for r in batch)
    sink.open()
    try:
        deadline = time.monotonic() + 10
        while not sink.stats().counters["mqtt_connected"] or sink.stats().counters["mqtt_holding"]:  # connected, and past the instance check
            if time.monotonic() > deadline:
                raise SinkError(f"{host}:{port}: no MQTT broker answered within 10 s; start one (e.g. mosquitto -p {port})")
            time.sleep(0.02)
        disk0 = _disk_write_bytes()
        start = time.perf_counter()
        for record in batch:
            sink.write(record)
        written = time.perf_counter()
        deadline = time.monotonic() + 60 + records / 100
        while sink.spool.depth():
            if time.monotonic() > deadline:
                raise SinkError(f"{host}:{port}: {sink.spool.depth()} records still unacknowledged after the benchmark's deadline")
            time.sleep(0.002)
        done = time.perf_counter()
        stats = sink.stats()
        spool = sink.spool.stats()
    finally:
        sink.close()  # persists the cursor and fdatasyncs: part of the bytes written
    disk1 = _disk_write_bytes()
    spool_bytes = spool.bytes_appended + spool.cursor_bytes
    disk = None if disk0 is None or disk1 is None else disk1 - disk0
    seconds = done - start
    return {
        "records": records,
        "qos": config.qos,
        "seconds": round(seconds, 3),
        "rate_per_s": round(records / seconds, 1),
        "write_call_us": round((written - start) / records * 1e6, 1),
        "payload_bytes_per_record": round(payload_bytes / records, 1),
        "spool_bytes_per_record": round(spool_bytes / records, 1),
        "disk_bytes_per_record": None if disk is None else round(disk / records, 1),
        "write_amplification": None if disk is None else round(disk / payload_bytes, 3),
        "reconnects": int(stats.counters["mqtt_connects"]) - 1,
        "dropped": spool.dropped,
    }
