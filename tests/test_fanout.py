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
from edge.sinks import SinkSpec
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


def test_a_reload_keeps_an_unchanged_sink_running_and_closes_a_changed_one_before_its_successor_opens(tmp_path: Path) -> None:
    from edge.config import parse
    from edge.sinks import sink_specs

    def specs(**file: Any) -> list[SinkSpec]:
        sinks = {"stdout": {"enabled": True}, "file": {"path": str(tmp_path / "r.jsonl"), **file}}
        return sink_specs(parse({"device_id": "d", "sinks": sinks}))

    first = SinkFanout()
    first.open(specs())
    stdout, file = first.sinks
    second = SinkFanout()
    # The same results file with another fsync policy: its lock (one writer per file) is released
    # before the new file sink takes it, or this open would fail.
    second.open(specs(fsync="never"), previous=first)
    assert second.sinks[0] is stdout and second.sinks[1] is not file and first.sinks == []
    assert isinstance(file, FileSink) and file._fd == -1  # closed
    kept = second.sinks[1]
    third = SinkFanout()
    third.open([s for s in specs(fsync="never") if s.name == "file"], previous=second)  # stdout turned off
    assert third.sinks == [kept] and second.sinks == [stdout]  # the dropped sink is left to its own fan-out's close
    second.close()
    third.write(Record(1, 0.0, 0.0, "d", "x", (Prediction(1, "a", 0.5),), 1.0, "0" * 64))
    third.close()
    assert [json.loads(line)["seq"] for line in (tmp_path / "r.jsonl").read_text().splitlines()] == [1]
