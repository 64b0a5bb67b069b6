"""Python itself: the version, and a venv that sees the system's picamera2 when the source needs it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from edge.doctor.check import FAIL, OK, WARN, Check, Context, source_kind

MIN_VERSION = (3, 10)  # pyproject.toml requires-python


def checks(ctx: Context) -> list[Check]:
    return [_version(), _venv(ctx)]


def _version() -> Check:
    version = ".".join(str(n) for n in sys.version_info[:3])
    if sys.version_info[:2] < MIN_VERSION:
        return Check(
            "python", FAIL, f"Python {version} at {sys.executable}", "mnv1-edge needs Python 3.10 or later (Raspberry Pi OS bookworm has 3.11)"
        )
    return Check("python", OK, f"Python {version} at {sys.executable}")


def system_site_packages(prefix: str) -> bool:
    """pyvenv.cfg's include-system-site-packages, as the site module reads it (case-insensitive "true")."""
    try:
        text = (Path(prefix) / "pyvenv.cfg").read_text(encoding="utf-8")
    except OSError:
        return False
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip().lower() == "include-system-site-packages":
            return value.strip().lower() == "true"
    return False


def _venv(ctx: Context) -> Check:
    if sys.prefix == sys.base_prefix:
        return Check("venv", OK, f"not in a venv: system Python {sys.prefix} (its packages are all visible)")
    sees_system = system_site_packages(sys.prefix)
    detail = f"venv {sys.prefix}, include-system-site-packages = {'true' if sees_system else 'false'} (pyvenv.cfg)"
    if sees_system:
        return Check("venv", OK, detail)
    fix = (
        f"python3 -m venv --system-site-packages {sys.prefix} (keeps the installed packages), "
        f"or set include-system-site-packages = true in {sys.prefix}/pyvenv.cfg"
    )
    if source_kind(ctx) == "picamera2":
        spec = importlib.util.find_spec("picamera2")
        if spec is not None:  # installed into the venv (or on PYTHONPATH) instead of from apt
            return Check("venv", OK, detail + f"; picamera2 is importable anyway, from {spec.origin}")
        return Check("venv", FAIL, detail + ": python3-picamera2 (apt) is invisible to it", fix)
    if ctx.config is None:
        return Check("venv", WARN, detail + ": a picamera2 source would not see python3-picamera2", fix)
    return Check("venv", OK, detail + f" (fine: source.kind = {source_kind(ctx)})")
