"""The durable spool: order, acknowledgement, restarts, kill -9, torn tails, size/age bounds, a full disk."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge.spool import Pos, Spool


def payload(i: int) -> bytes:
    return b'{"seq":%d,"pad":"%s"}' % (i, b"x" * 250)


def seq_of(data: bytes) -> int:
    return int(data.split(b",")[0].split(b":")[1].rstrip(b"}"))


def seqs(spool: Spool, limit: int = 100_000) -> list[int]:
    return [seq_of(item.payload) for item in spool.read(Pos(0, 0, 0), limit)]


def opened(directory: Path, **kwargs: float) -> Spool:
    spool = Spool(directory, int(kwargs.pop("max_bytes", 10_000_000)), **kwargs)
    spool.open()
    return spool


def test_acknowledged_records_are_gone_after_restart_and_the_rest_replay_in_order(tmp_path: Path) -> None:
    spool = opened(tmp_path)
    for i in range(1, 101):
        assert spool.append(payload(i))
    items = spool.read(Pos(0, 0, 0), 40)
    assert [seq_of(x.payload) for x in items] == list(range(1, 41))
    spool.ack(items[-1].next)
    assert spool.depth() == 60
    spool.close()

    spool = opened(tmp_path)
    assert spool.depth() == 60
    for i in range(101, 111):
        spool.append(payload(i))
    assert seqs(spool) == list(range(41, 111))
    spool.close()


def test_records_survive_kill9_without_close(tmp_path: Path) -> None:
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from edge.spool import Spool\n"
        "s = Spool(Path(sys.argv[1]), 10_000_000)\n"
        "s.open()\n"
        "for i in range(1, 501):\n"
        "    assert s.append(b'{\"seq\":%d}' % i)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True)
    assert proc.returncode == -9, proc.stderr
    spool = opened(tmp_path)
    assert seqs(spool) == list(range(1, 501))


def test_a_torn_tail_is_cut_off_and_a_torn_cursor_falls_back(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spool = opened(tmp_path)
    for i in range(1, 21):
        spool.append(payload(i))
    items = spool.read(Pos(0, 0, 0), 5)
    spool.ack(items[2].next)
    spool.flush()
    spool.ack(items[4].next)
    spool.flush()
    spool.close()
    segment = max(tmp_path.glob("*.seg"))
    with open(segment, "ab") as f:
        f.write(b"\x20\x00\x00\x00garbage")  # half a frame, as a crash mid-write leaves it
    with open(tmp_path / "cursor", "r+b") as f:  # tear the newest cursor slot
        f.seek(0)
        f.write(b"\xff" * 8)
    spool = opened(tmp_path)
    assert "torn tail" in caplog.text
    assert seqs(spool) == list(range(4, 21))  # the older cursor slot: 4 and 5 are replayed, none lost
    spool.append(payload(21))
    assert seqs(spool)[-1] == 21


def test_size_bound_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    spool = opened(tmp_path, max_bytes=65536)
    for i in range(1, 1001):
        spool.append(payload(i))
    stats = spool.stats()
    assert stats["spool_bytes"] <= 65536
    assert stats["spool_dropped_size"] > 0
    assert stats["spool_depth"] + stats["spool_dropped_size"] == 1000
    kept = seqs(spool)
    assert kept == list(range(1001 - len(kept), 1001))  # the newest survive, in order


def test_age_bound_drops_old_records_at_the_cursor(tmp_path: Path) -> None:
    now = [1000.0]
    spool = opened(tmp_path, max_age_s=50.0, clock=lambda: now[0])  # type: ignore[arg-type]
    for i in range(1, 11):
        spool.append(payload(i))
    now[0] = 1100.0
    for i in range(11, 21):
        spool.append(payload(i))
    now[0] = 1120.0
    spool.flush()
    assert spool.stats()["spool_dropped_age"] == 10
    assert seqs(spool) == list(range(11, 21))


@pytest.fixture
def tiny_disk(tmp_path: Path) -> object:
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("needs root to mount a 256 KiB tmpfs")
    yield mount
    subprocess.run(["umount", "--lazy", str(mount)], check=True)


def test_a_full_disk_drops_the_oldest_and_keeps_going(tiny_disk: Path) -> None:
    spool = opened(tiny_disk / "spool", max_bytes=100_000_000)  # the disk, not the cap, is the limit
    results = [spool.append(payload(i)) for i in range(1, 3001)]  # ~800 KiB into 256 KiB
    stats = spool.stats()
    assert stats["spool_dropped_full"] > 0
    assert results[-1] is True
    kept = seqs(spool)
    assert kept[-1] == 3000 and kept == sorted(kept)
    assert stats["spool_depth"] == len(kept)
    assert stats["spool_depth"] + stats["spool_dropped_full"] == 3000
    spool.close()
