"""Cameras: picamera2 and libcamera importable and the cameras they list; V4L2 webcams and their formats."""

from __future__ import annotations

import glob
from typing import Any

from edge.doctor.check import FAIL, OK, SKIP, WARN, Check, Context, source_kind

PICAMERA2_FIX = (
    "sudo apt install python3-picamera2, and make the venv see it: python3 -m venv --system-site-packages "
    "(picamera2 is not on PyPI for the Pi's libcamera)"
)


def checks(ctx: Context) -> list[Check]:
    return [_picamera2(ctx), *_v4l2(ctx)]


def _picamera2(ctx: Context) -> Check:
    needed = source_kind(ctx) == "picamera2"
    try:
        import libcamera  # noqa: F401 - ships with picamera2; the source needs its ColorSpace
        from picamera2 import Picamera2
    except ImportError as exc:
        if needed:
            return Check("picamera2", FAIL, f"not importable ({exc}); source.kind = picamera2 needs it", PICAMERA2_FIX)
        return Check("picamera2", SKIP, f"not importable ({exc}); not needed (source.kind = {source_kind(ctx) or 'unknown'})")
    try:
        cameras: list[dict[str, Any]] = list(Picamera2.global_camera_info())
    except Exception as exc:  # libcamera's camera manager failing to start: a broken install
        return Check(
            "picamera2", FAIL if needed else WARN, f"importable, but listing cameras failed ({exc})", "rpicam-hello --list-cameras shows why"
        )
    listed = ", ".join(f"{c.get('Num', i)}: {c.get('Model', '?')}" for i, c in enumerate(cameras)) or "no cameras"
    detail = f"importable; libcamera lists {listed}"
    if not needed:
        return Check("picamera2", OK, detail)
    assert ctx.config is not None
    wanted = ctx.config.source.picamera2.camera
    if wanted >= len(cameras):
        fix = "check the ribbon cable and camera_auto_detect=1 in /boot/firmware/config.txt (rpicam-hello --list-cameras), or source.picamera2.camera"
        return Check("picamera2", FAIL, f"{detail}: no camera {wanted} (source.picamera2.camera)", fix)
    return Check("picamera2", OK, f"{detail}; source.picamera2.camera = {wanted}")


def describe_sizes(sizes: dict[str, list[tuple[int, int]]]) -> str:
    parts = []
    for fmt, found in sizes.items():
        ordered = sorted(set(found), key=lambda s: (s[0] * s[1], s))
        parts.append(f"{fmt} {' '.join(f'{w}x{h}' for w, h in ordered)}" if ordered else f"{fmt} (no sizes)")
    return "; ".join(parts) or "no YUYV or MJPEG capture format (not a webcam: an ISP or codec node)"


def _v4l2(ctx: Context) -> list[Check]:
    from edge.sources.v4l2_caps import list_sizes

    needed = source_kind(ctx) == "v4l2"
    configured = ctx.config.source.v4l2.device if ctx.config is not None else ""
    devices = sorted(glob.glob("/dev/video*"), key=lambda d: (len(d), d))
    if configured and needed and configured not in devices:
        devices.insert(0, configured)
    if not devices:
        return [Check("v4l2", SKIP, f"no /dev/video* devices; not needed (source.kind = {source_kind(ctx) or 'unknown'})")]
    out = []
    for device in devices:
        is_source = needed and device == configured
        try:
            sizes = list_sizes(device)
        except OSError as exc:
            fix = "plug the webcam in (ls /dev/video*) and check the service user is in group video" if is_source else ""
            out.append(Check("v4l2", FAIL if is_source else WARN, f"{device}: cannot open ({exc.strerror})", fix))
            continue
        status = FAIL if is_source and not sizes else OK
        fix = "set source.v4l2.device to a webcam node (v4l2-ctl --list-devices)" if status == FAIL else ""
        role = " (source.v4l2.device)" if is_source else ""
        out.append(Check("v4l2", status, f"{device}{role}: {describe_sizes(sizes)}", fix))
    return out
