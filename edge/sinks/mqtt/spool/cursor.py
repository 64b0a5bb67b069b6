"""The spool's delivery cursor: a record position, persisted alternately to two CRC-checked slots."""

from __future__ import annotations

import fcntl
import logging
import os
import struct
import zlib
from pathlib import Path
from typing import NamedTuple

from edge.errors import SinkError

log = logging.getLogger(__name__)

# Cursor slot: write counter, segment, offset, index in segment; then a CRC32 of those.
_CURSOR = struct.Struct("<QQQQ")
_SLOT = 48


class Pos(NamedTuple):
    """A record's place: segment number, byte offset, index of the record in its segment."""

    seg: int
    off: int
    idx: int


class CursorFile:
    """`<spool>/cursor`, which also holds the spool directory's lock while open."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.fd = -1
        self.writes = 0  # the counter of the newest slot: the higher one wins at load
        self.bytes_written = 0

    def open(self) -> None:
        self.fd = os.open(self.directory / "cursor", os.O_RDWR | os.O_CREAT, 0o600)
        # Two spools on one directory would each truncate and unlink the other's segments: the
        # lock (on the cursor's open file, so also between sinks of one process) keeps them apart.
        # The kernel drops it when the descriptor closes, so a kill -9 never leaves it stale.
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SinkError(
                f"{self.directory}: spool in use by another process or sink; "
                "stop the other mnv1-edge or give each MQTT sink its own sinks.mqtt.spool.path"
            ) from None

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
        self.fd = -1

    def load(self) -> Pos:
        """The newest slot whose CRC checks out; the start when neither does."""
        data = os.pread(self.fd, 2 * _SLOT, 0)
        best: tuple[int, Pos] | None = None
        for slot in (0, 1):
            raw = data[slot * _SLOT : slot * _SLOT + _CURSOR.size + 4]
            if len(raw) < _CURSOR.size + 4:
                continue
            (crc,) = struct.unpack_from("<I", raw, _CURSOR.size)
            if zlib.crc32(raw[: _CURSOR.size]) != crc:
                continue
            counter, seg, off, idx = _CURSOR.unpack_from(raw)
            if best is None or counter > best[0]:
                best = (counter, Pos(seg, off, idx))
        if best is None:
            return Pos(0, 0, 0)
        self.writes = best[0]
        return best[1]

    def save(self, pos: Pos) -> bool:
        """Write `pos` over the older slot, so a torn write falls back to the previous cursor."""
        self.writes += 1
        body = _CURSOR.pack(self.writes, *pos)
        record = body + struct.pack("<I", zlib.crc32(body))
        try:
            os.pwrite(self.fd, record, (self.writes % 2) * _SLOT)
        except OSError as exc:
            log.warning("spool %s: cannot save the delivery cursor (%s); records may be sent twice after a restart", self.directory, exc.strerror)
            return False
        self.bytes_written += len(record)
        return True
