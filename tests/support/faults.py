"""Helpers the fault tests share: the model under test, the real CLI in a subprocess, crafted files."""

from __future__ import annotations

import os
import struct
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge import paths
from tests.support.daemon import EXE


@pytest.fixture(scope="module")
def model(request: pytest.FixtureRequest) -> Path:
    """Our converted model when it has been built, else Google's with a manifest (same contract)."""
    name = "converted_model" if paths.default_model().is_file() else "reference_model"
    return Path(request.getfixturevalue(name))


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 64 KiB tmpfs (as the sweep measured a full disk), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def cli(*args: str, timeout: float = 60, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=timeout, input=stdin)


def png_bomb(path: Path, width: int, height: int) -> Path:
    """A real, valid 1-bit greyscale PNG of width x height zeros: a few KB that decode to width*height bytes."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    row = b"\0" * (1 + (width + 7) // 8)  # filter byte + packed bits
    z = zlib.compressobj(9)
    data = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


def free_bytes(mount: Path) -> int:
    """What a file on `mount` may still take (fill it with that many bytes for a full disk)."""
    st = os.statvfs(mount)
    return st.f_bavail * st.f_frsize
