"""Spool record framing: length, CRC32 and timestamp ahead of each payload; torn tails found and cut off."""

from __future__ import annotations

import logging
import os
import struct
import zlib
from pathlib import Path
from typing import NamedTuple

log = logging.getLogger(__name__)

# Record frame: payload length, CRC32 of (stored_at + payload), stored_at (epoch seconds).
HEADER = struct.Struct("<IId")
MAX_PAYLOAD = 1 << 24  # a length above this in a header means a corrupt frame
READ_CHUNK = 256 * 1024


class Scan(NamedTuple):
    """What a segment file holds up to its first bad frame."""

    records: int
    newest: float  # stored_at of the last good record (0.0 when there is none)
    size: int  # bytes of good records


def frame(payload: bytes, stored_at: float) -> bytes:
    stamp = struct.pack("<d", stored_at)
    return HEADER.pack(len(payload), zlib.crc32(payload, zlib.crc32(stamp)), stored_at) + payload


def parse(data: bytes, start: int) -> tuple[float, bytes, int] | None:
    """The record at `start` in `data` as (stored_at, payload, end), or None if torn or corrupt."""
    if start + HEADER.size > len(data):
        return None
    length, crc, stored_at = HEADER.unpack_from(data, start)
    end = start + HEADER.size + length
    if length > MAX_PAYLOAD or end > len(data):
        return None
    payload = data[start + HEADER.size : end]
    if zlib.crc32(payload, zlib.crc32(struct.pack("<d", stored_at))) != crc:
        return None
    return stored_at, payload, end


def stored_at(header: bytes) -> float | None:
    """The timestamp in a frame header (unchecked: the CRC covers the payload too), None if short."""
    if len(header) < HEADER.size:
        return None
    return float(HEADER.unpack_from(header)[2])


def scan(path: Path) -> Scan:
    """Count a segment's records, truncating the file at the first torn or corrupt frame."""
    data = path.read_bytes()
    count, newest, offset = 0, 0.0, 0
    while (parsed := parse(data, offset)) is not None:
        newest, offset = parsed[0], parsed[2]
        count += 1
    if offset < len(data):
        log.warning("spool %s: dropped a torn tail of %d bytes (a crash or power cut during a write)", path, len(data) - offset)
        os.truncate(path, offset)
    return Scan(count, newest, offset)
