"""Crash-safe file writes: a reader sees the old file or the new one, never a torn one."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from edge.errors import SinkError


def write_atomic(path: Path, data: bytes, mode: int = 0o644, durable: bool = True) -> None:
    """Write to a temp file beside `path`, fsync it, rename over `path`, fsync the directory.

    `durable=False` skips both fsyncs: readers never see a torn file, but a power cut may leave
    the previous version (for files rewritten every few seconds anyway)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def blocking_file(folder: Path) -> Path | None:
    """The first of `folder` and its ancestors that exists but is not a folder (which makes
    mkdir fail with a misleading "File exists"), or None."""
    for p in (Path(folder), *Path(folder).parents):
        if p.exists():
            return None if p.is_dir() else p
    return None


def explain_mkdir(folder: Path, exc: OSError) -> str:
    """Why `folder` could not be created, for an error line."""
    blocker = blocking_file(folder)
    if blocker is not None:
        return f"{blocker} is a file, not a folder"
    return str(exc.strerror or exc)


def check_writable(path: Path, what: str) -> None:
    """Fail before any heavy work when `path` cannot be created: probe its folder with a temp file."""
    path = Path(path)
    if path.is_dir():
        raise SinkError(f"{path}: is a directory; {what} needs a file path")
    parent = path.parent  # Path("x").parent is Path("."), never empty
    if not parent.is_dir():
        raise SinkError(f"{path}: cannot write {what}: folder {parent} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=parent)
    except OSError as exc:
        raise SinkError(f"{path}: cannot write {what} in {parent} ({exc.strerror})") from exc
    os.close(fd)
    os.unlink(tmp)
