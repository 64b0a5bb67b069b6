"""Fetch and verify the official float model: a pinned archive URL or a local .tflite path."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import io
import os
import tarfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

from edge.convert import flatbuf
from edge.errors import ModelError

# The pins (also recorded in models/source.json, which a test keeps in step).
ARCHIVE_URL = "https://storage.googleapis.com/download.tensorflow.org/models/mobilenet_v1_2018_02_22/mobilenet_v1_0.25_128.tgz"
MEMBER = "mobilenet_v1_0.25_128.tflite"
SHA256 = "0a0a478e343a22870db7df88f222728d9b08135cd7bee9bb6edd1b5c4d96f2e0"
MAX_BYTES = 64 << 20  # the archive is ~5 MB; refuse anything absurd
URL_ENV = "MNV1_EDGE_FLOAT_URL"  # overrides ARCHIVE_URL (a local mirror; tests point it at a loopback server)


@dataclass(frozen=True)
class FloatModelSource:
    data: bytes
    sha256: str
    origin: str  # the path or URL it came from
    verified: bool  # sha256 equals the pin


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mnv1-edge"


def default_url() -> str:
    """The archive to download when no --source is given: $MNV1_EDGE_FLOAT_URL (a mirror, or a
    test's local server) or the pinned official URL; either way the model inside must match the pin."""
    return os.environ.get(URL_ENV) or ARCHIVE_URL


def cached_model() -> Path:
    """Where a downloaded float model is kept once it matched the pin (named by the pin, not the URL)."""
    return cache_dir() / f"{MEMBER.removesuffix('.tflite')}-{SHA256[:16]}.tflite"


def resolve(source: str | None, allow_unverified: bool = False) -> FloatModelSource:
    """Read the float model from `source` (a path or http(s) URL; default: the pinned archive)."""
    if not source or source.startswith(("http://", "https://")):
        url = source or default_url()
        # Any URL must yield the pinned bytes, so the cache answers for all of them; not when an
        # unverified model is allowed: then the URL may hold another model, which is never cached.
        cached = None if allow_unverified else _from_cache()
        if cached is not None:
            return FloatModelSource(cached, SHA256, url, True)
        found = _verify(_extract(_fetch(url), url), url, allow_unverified)
        if found.verified:
            _to_cache(found.data)  # only a model that matched the pin is kept: nothing bad is reused
        return found
    path = Path(source)
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise ModelError(f"{path}: no such file; pass the official float model with --source PATH (or omit --source to download it)") from exc
    except IsADirectoryError as exc:
        raise ModelError(f"{path}: is a directory, not a .tflite file") from exc
    except OSError as exc:
        raise ModelError(f"{path}: cannot read ({exc.strerror})") from exc
    if path.suffix in (".tgz", ".gz", ".tar"):
        data = _extract(data, str(path))
    flatbuf.check_identifier(data, str(path))
    return _verify(data, str(path), allow_unverified)


def _verify(data: bytes, where: str, allow_unverified: bool) -> FloatModelSource:
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256 and not allow_unverified:
        raise ModelError(f"{where}: sha256 {digest} does not match the pinned {SHA256}; refusing (pass --allow-unverified to convert it anyway)")
    return FloatModelSource(data, digest, where, digest == SHA256)


def _from_cache() -> bytes | None:
    """The cached float model when it still matches the pin; a damaged one is removed and re-fetched."""
    path = cached_model()
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if hashlib.sha256(data).hexdigest() == SHA256:
        return data
    with contextlib.suppress(OSError):  # an unwritable cache is fetched around, never fatal
        path.unlink(missing_ok=True)
    return None


def _to_cache(data: bytes) -> None:
    try:
        from edge.fsutil import write_atomic

        cached_model().parent.mkdir(parents=True, exist_ok=True)
        write_atomic(cached_model(), data)
    except OSError:
        pass  # the cache is an optimisation; an unwritable home must not fail the conversion


def _fetch(url: str) -> bytes:
    """The archive's bytes; a short read (a dropped connection) is refused here, not unpacked."""
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            expected = response.headers.get("Content-Length")
            blob: bytes = response.read(MAX_BYTES + 1)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        if isinstance(exc, http.client.IncompleteRead):
            reason = f"connection closed after {len(exc.partial)} bytes"
        raise ModelError(
            f"{url}: download failed ({reason}); on an offline machine fetch it elsewhere and pass --source PATH/{MEMBER} (or the .tgz)"
        ) from exc
    if len(blob) > MAX_BYTES:
        raise ModelError(f"{url}: larger than {MAX_BYTES >> 20} MB; not the MobileNet archive")
    if expected is not None and expected.isdigit() and len(blob) != int(expected):
        raise ModelError(f"{url}: download truncated ({len(blob)} of {expected} bytes); try again")
    return blob


def _extract(blob: bytes, where: str) -> bytes:
    if flatbuf.is_tflite(blob):
        return blob
    try:
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:*") as tar:
            member = next((m for m in tar.getmembers() if m.isfile() and (m.name == MEMBER or m.name.endswith("/" + MEMBER))), None)
            if member is None:
                raise ModelError(f"{where}: archive has no {MEMBER}")
            f = tar.extractfile(member)
            if f is None:
                raise ModelError(f"{where}: cannot read {MEMBER} from the archive")
            return f.read()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:  # truncated or corrupt gzip/tar
        raise ModelError(f"{where}: not a .tflite file nor a readable .tgz archive ({exc})") from exc
