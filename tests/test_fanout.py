"""The sink fan-out: a sink that raises is logged once, counted, and never stops the others."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from edge.config import FileSinkConfig
from edge.daemon.fanout import SinkFanout
from edge.model.contract import Prediction
from edge.record import Record
from edge.sinks.file import FileSink
from edge.stats import SinkCounters


class BrokenSink:
    """A sink with a bug: every write raises until `healed`."""

    name = "broken"

    def __init__(self) -> None:
        self.healed = False

    def open(self) -> None: ...

    def write(self, record: Record) -> None:
        if not self.healed:
            raise RuntimeError("disk on fire")

    def report(self, stats: Any) -> None: ...

    def stats(self) -> SinkCounters:
        return SinkCounters({})

    def flush(self) -> None: ...

    def close(self) -> None: ...


def test_a_raising_sink_is_logged_once_counted_and_the_file_sink_still_gets_every_record(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    file_sink = FileSink(FileSinkConfig(path=str(tmp_path / "r.jsonl")))
    file_sink.open()
    broken = BrokenSink()
    fanout = SinkFanout()
    fanout.sinks += [broken, file_sink]
    caplog.set_level(logging.INFO, logger="edge.daemon")
    for seq in range(1, 101):
        if seq == 90:
            broken.healed = True
        fanout.write(Record(seq, 0.0, 0.0, "d", "x", (Prediction(1, "a", 0.5),), 1.0, "0" * 64))
    fanout.close()
    lines = (tmp_path / "r.jsonl").read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == list(range(1, 101))
    failures = [r for r in caplog.records if "write failed" in r.getMessage()]
    assert len(failures) == 1 and failures[0].levelno == logging.ERROR
    assert any("works again" in r.getMessage() for r in caplog.records)
    broken_counters = fanout.stats()["broken"]
    assert broken_counters.raised == 89 and broken_counters.lost == 89
