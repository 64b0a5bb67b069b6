"""What a V4L2 webcam can deliver (VIDIOC_ENUM_FMT / VIDIOC_ENUM_FRAMESIZES), and the cheapest capture mode that covers the model's input."""

from __future__ import annotations

import os
import select
import struct
from dataclasses import dataclass
from pathlib import Path

BUF_TYPE_VIDEO_CAPTURE = 1
FRMSIZE_DISCRETE = 1
FMTDESC = struct.Struct("=III32sII12x")  # struct v4l2_fmtdesc: 64 bytes
FRMSIZE = struct.Struct("=III6I8x")  # struct v4l2_frmsizeenum: 44 bytes (the union as 6 u32)
# FFmpeg's v4l2 input_format names for the two formats every UVC webcam offers.
FFMPEG_NAMES = {"YUYV": "yuyv422", "MJPG": "mjpeg"}
MAX_LOWRES = 3  # FFmpeg's MJPEG decoder decodes at 1/2, 1/4 or 1/8 scale in the DCT domain


def _iowr(nr: int, size: int) -> int:
    return (3 << 30) | (size << 16) | (ord("V") << 8) | nr


VIDIOC_ENUM_FMT = _iowr(2, FMTDESC.size)
VIDIOC_ENUM_FRAMESIZES = _iowr(74, FRMSIZE.size)


def list_sizes(device: str) -> dict[str, list[tuple[int, int]]]:
    """{"yuyv422": [(w, h), ...], "mjpeg": [...]}: the discrete sizes of the formats FFmpeg can ask for."""
    import fcntl

    out: dict[str, list[tuple[int, int]]] = {}
    fd = os.open(device, os.O_RDWR | os.O_NONBLOCK)
    try:
        for index in range(64):
            try:
                desc = fcntl.ioctl(fd, VIDIOC_ENUM_FMT, FMTDESC.pack(index, BUF_TYPE_VIDEO_CAPTURE, 0, b"", 0, 0))
            except OSError:
                break  # EINVAL after the last format
            fourcc = FMTDESC.unpack(desc)[4].to_bytes(4, "little").decode("ascii", "replace")
            if fourcc in FFMPEG_NAMES:
                out[FFMPEG_NAMES[fourcc]] = _frame_sizes(fcntl, fd, FMTDESC.unpack(desc)[4])
    finally:
        os.close(fd)
    return out


def _frame_sizes(fcntl: object, fd: int, pixelformat: int) -> list[tuple[int, int]]:
    sizes = []
    for index in range(256):
        try:
            raw = fcntl.ioctl(fd, VIDIOC_ENUM_FRAMESIZES, FRMSIZE.pack(index, pixelformat, 0, 0, 0, 0, 0, 0, 0))  # type: ignore[attr-defined]
        except OSError:
            break
        _, _, kind, *dims = FRMSIZE.unpack(raw)
        if kind == FRMSIZE_DISCRETE:
            sizes.append((dims[0], dims[1]))
        else:  # stepwise/continuous (rare on UVC): offer the smallest and largest
            sizes += [(dims[0], dims[2]), (dims[1], dims[3])]
            break
    return sizes


@dataclass(frozen=True)
class Mode:
    input_format: str  # FFmpeg's name: yuyv422 or mjpeg
    width: int
    height: int
    lowres: int = 0  # MJPEG decode scale 1/2^lowres


def choose_mode(sizes: dict[str, list[tuple[int, int]]], need: tuple[int, int], wanted: str = "auto") -> Mode | None:
    """The smallest size of at least `need` (width, height: what the crop needs, Crop.need): raw YUYV
    if the camera has one (no decoding at all), else MJPEG decoded at the smallest scale that still covers it."""
    need_w, need_h = need
    for fmt in ("yuyv422", "mjpeg"):
        if wanted not in ("auto", fmt):
            continue
        covering = [s for s in sizes.get(fmt, []) if s[0] >= need_w and s[1] >= need_h]
        if not covering:
            continue
        w, h = min(covering, key=lambda s: (s[0] * s[1], s))
        lowres = 0
        if fmt == "mjpeg":
            while lowres < MAX_LOWRES and (w >> (lowres + 1)) >= need_w and (h >> (lowres + 1)) >= need_h:
                lowres += 1
        return Mode(fmt, w, h, lowres)
    return None


def device_fd(device: str) -> int | None:
    """The descriptor this process has open on `device` (FFmpeg's, after av.open), or None."""
    target = os.path.realpath(device)
    found = None
    for entry in Path("/proc/self/fd").iterdir():
        try:
            if os.readlink(entry) == target:
                found = int(entry.name)
        except OSError:
            continue
    return found


def wait_readable(fd: int, timeout_s: float) -> bool:
    """Whether a frame is ready within the timeout. A V4L2 descriptor polls readable once a buffer is
    done, so FFmpeg's VIDIOC_DQBUF that follows cannot block; a frozen webcam just times out here."""
    ready, _, _ = select.select([fd], [], [], timeout_s)
    return bool(ready)
