"""The durable spool: order, acknowledgement, restarts, kill -9, torn tails, size/age bounds, a full disk."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.errors import SinkError
from edge.sinks.mqtt.spool import Pos, Spool


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
        "from edge.sinks.mqtt.spool import Spool\n"
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
    assert stats.bytes <= 65536
    assert stats.dropped_size > 0
    assert stats.depth + stats.dropped_size == 1000
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
    assert spool.stats().dropped_age == 10
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
    assert stats.dropped_full > 0
    assert results[-1] is True
    kept = seqs(spool)
    assert kept[-1] == 3000 and kept == sorted(kept)
    assert stats.depth == len(kept)
    assert stats.depth + stats.dropped_full == 3000
    spool.close()


def fds_under(directory: Path) -> list[str]:
    """This process's open descriptors on files in `directory`."""
    targets = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            targets.append(os.readlink(f"/proc/self/fd/{fd}"))
    return [t for t in targets if t.startswith(f"{directory}/")]


def test_a_second_spool_on_one_directory_is_refused_until_the_first_closes(tmp_path: Path) -> None:
    first = opened(tmp_path)
    assert first.append(payload(1))
    second = Spool(tmp_path, 10_000_000)
    in_use = re.escape(f"{tmp_path}: spool in use by another process or sink; ")
    with pytest.raises(SinkError, match=in_use):
        second.open()
    script = "import sys\nfrom pathlib import Path\nfrom edge.sinks.mqtt.spool import Spool\nSpool(Path(sys.argv[1]), 10_000_000).open()\n"
    other = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True)
    assert other.returncode != 0 and "spool in use by another process or sink" in other.stderr
    assert first.append(payload(2))
    assert seqs(first) == [1, 2]  # the refused ones truncated or unlinked nothing
    first.close()
    second.open()
    assert seqs(second) == [1, 2]
    second.close()
    assert fds_under(tmp_path) == []


@contextlib.contextmanager
def unwritable(path: Path) -> Iterator[None]:
    """`path` cannot be changed, not even by root (chattr +i); by its mode for other users."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o500 if path.is_dir() else 0o400)
        try:
            yield
        finally:
            path.chmod(mode)
        return
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode:
        pytest.skip("root needs chattr +i (ext4, xfs, btrfs) to make a path unwritable")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_a_spool_directory_without_write_permission_fails_open_clearly(tmp_path: Path) -> None:
    spool = opened(tmp_path)
    spool.append(payload(1))
    spool.close()
    with unwritable(tmp_path):
        again = Spool(tmp_path, 10_000_000)
        with pytest.raises(SinkError, match=re.escape(f"{tmp_path}: cannot open the MQTT spool: ") + r".*sinks\.mqtt\.spool\.path"):
            again.open()  # no new segment: it must not open and then drop every record
        assert fds_under(tmp_path) == []  # nor keep the cursor (and its lock) open
    again.open()
    assert again.append(payload(2)) and seqs(again) == [1, 2]
    again.close()


def test_an_unreadable_or_unrepairable_segment_is_a_sink_error(tmp_path: Path) -> None:
    (tmp_path / "a" / "000000000001.seg").mkdir(parents=True)  # read_bytes() fails
    with pytest.raises(SinkError, match=re.escape(f"{tmp_path / 'a'}: cannot open the MQTT spool: Is a directory")):
        Spool(tmp_path / "a", 10_000_000).open()

    spool = opened(tmp_path / "b")
    spool.append(payload(1))
    spool.close()
    segment = next((tmp_path / "b").glob("*.seg"))
    with open(segment, "ab") as f:
        f.write(b"torn")
    with unwritable(segment), pytest.raises(SinkError, match=r"cannot open the MQTT spool: .*sinks\.mqtt\.spool\.path"):
        Spool(tmp_path / "b", 10_000_000).open()  # the torn tail cannot be cut off
    assert fds_under(tmp_path) == []


def thread_bytes_read() -> int:
    """Bytes this thread has read through read(2)/pread(2) so far (Linux task I/O accounting)."""
    io = Path("/proc/thread-self/io")
    if not io.exists():
        pytest.skip("no /proc/thread-self/io")
    return int(io.read_text().split("rchar:")[1].split()[0])


def test_expiry_reads_only_one_header_while_the_oldest_record_is_young(tmp_path: Path) -> None:
    spool = opened(tmp_path, max_age_s=3600.0)
    for i in range(1, 2001):  # ~550 KB waiting for a broker, more than one read chunk
        spool.append(payload(i))
    before = thread_bytes_read()
    spool.flush()  # appends wait for its lock: it must not read the backlog while nothing expires
    assert thread_bytes_read() - before < 4096
    assert spool.depth() == 2000 and spool.stats().dropped_age == 0
    spool.close()
