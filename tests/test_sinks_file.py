"""File sink: JSON Lines, rotation with retention, torn-line repair on open."""

from __future__ import annotations

import json
from pathlib import Path

from edge.config import FileSinkConfig
from edge.model.contract import Prediction
from edge.record import Record
from edge.sinks.file import FileSink, repair


def record(seq: int) -> Record:
    return Record(seq, 1.7e9 + seq, 1.7e9 + seq, "dev", "test", (Prediction(1, "tench, Tinca tinca", 0.5),), 1.25, "ab" * 32)


def read_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_appends_one_json_line_per_record(tmp_path: Path) -> None:
    sink = FileSink(FileSinkConfig(path=str(tmp_path / "sub" / "r.jsonl"), fsync="always"))
    sink.open()
    for i in range(3):
        sink.write(record(i))
    sink.close()
    lines = read_lines(tmp_path / "sub" / "r.jsonl")
    assert [d["seq"] for d in lines] == [0, 1, 2]
    assert lines[0]["top_k"] == [{"class_index": 1, "label": "tench, Tinca tinca", "score": 0.5}]
    assert sink.stats().counters["written"] == 3 and sink.stats().counters["errors"] == 0


def test_rotation_keeps_n_files(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    line_bytes = len(record(0).to_json()) + 1
    sink = FileSink(FileSinkConfig(path=str(path), max_bytes=line_bytes * 10, keep=2, fsync="never"))
    sink.open()
    for i in range(45):
        sink.write(record(i))
    sink.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.jsonl", "r.jsonl.1", "r.jsonl.2"]
    seqs = [d["seq"] for name in ("r.jsonl.2", "r.jsonl.1", "r.jsonl") for d in read_lines(tmp_path / name)]
    assert seqs[0] >= 15 and seqs == list(range(seqs[0], 45))  # the oldest went with the rotated-out files
    assert all(p.stat().st_size <= line_bytes * 10 for p in tmp_path.iterdir())
    assert sink.stats().counters["rotations"] == 4


def test_open_repairs_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    good = record(0).to_json() + "\n" + record(1).to_json() + "\n"
    path.write_text(good + record(2).to_json()[:37])
    sink = FileSink(FileSinkConfig(path=str(path)))
    sink.open()
    sink.write(record(2))
    sink.close()
    assert [d["seq"] for d in read_lines(path)] == [0, 1, 2]


def test_repair_cuts_nul_garbage_after_a_power_loss(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    good = record(0).to_json() + "\n"
    path.write_bytes(good.encode() + b"\0" * 300 + b"\n")
    assert repair(path) == 301
    assert path.read_text() == good
    assert repair(path) == 0


def test_a_failed_rotation_keeps_records_coming_and_rotates_once_it_can(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    line_bytes = len(record(0).to_json()) + 1
    sink = FileSink(FileSinkConfig(path=str(path), max_bytes=line_bytes * 5, keep=1, fsync="interval"))
    sink.open()
    blocker = tmp_path / "r.jsonl.1"
    blocker.mkdir()
    (blocker / "keep").write_text("a non-empty directory where FILE.1 must go: the rotation fails")
    for i in range(12):
        sink.write(record(i))
    assert [d["seq"] for d in read_lines(path)] == list(range(12))  # all there, past max_bytes
    assert sink.stats().counters["errors"] == 0 and sink.stats().counters["rotate_errors"] == 7 and sink.stats().counters["rotations"] == 0
    (blocker / "keep").unlink()
    blocker.rmdir()
    for i in range(12, 15):
        sink.write(record(i))
    sink.close()
    assert [d["seq"] for d in read_lines(blocker)] == list(range(12))
    assert [d["seq"] for d in read_lines(path)] == [12, 13, 14]
    assert sink.stats().counters["rotations"] == 1 and sink.stats().counters["errors"] == 0


def test_a_file_deleted_while_open_is_started_again(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "r.jsonl"
    sink = FileSink(FileSinkConfig(path=str(path), fsync="never"))
    sink.open()
    sink.write(record(0))
    path.unlink()
    path.parent.rmdir()  # a clean-up that removed the folder too
    sink.write(record(1))
    sink.write(record(2))
    sink.close()
    assert [d["seq"] for d in read_lines(path)] == [1, 2]  # not written into the deleted inode
    assert sink.stats().counters["written"] == 3 and sink.stats().counters["records_lost"] == 0


def test_a_second_writer_of_one_file_is_refused(tmp_path: Path) -> None:
    import pytest

    from edge.errors import SinkError

    path = tmp_path / "r.jsonl"
    first = FileSink(FileSinkConfig(path=str(path), fsync="never"))
    first.open()
    second = FileSink(FileSinkConfig(path=str(path), fsync="never"))
    with pytest.raises(SinkError, match="is being written by another mnv1-edge; give each daemon its own file"):
        second.open()
    first.write(record(0))
    first.close()
    second.open()  # free again once the first closed
    second.write(record(1))
    second.close()
    assert [d["seq"] for d in read_lines(path)] == [0, 1]
