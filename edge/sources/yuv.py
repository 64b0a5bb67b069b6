"""YUV420 (I420, full-range BT.601) to RGB for camera buffers: swscale through PyAV, or NumPy without it."""

# Measured per 128x128 frame with ../shared/tools/arm_cost (docs/design/arm-cost.md): PyAV's swscale 0.12 M
# instructions on A53 and A76 (NEON), Pillow's YCbCr convert 1.13 M, this NumPy path 1.60 M. PyAV is
# on every Pi that has picamera2 (python3-picamera2 depends on python3-av); NumPy is the fallback.

from __future__ import annotations

import logging
from typing import Any, Protocol, cast

import numpy as np

from edge.errors import SourceError

log = logging.getLogger("edge.sources.yuv")


class Converter(Protocol):
    def __call__(self, yuv: np.ndarray) -> np.ndarray: ...


class Yuv420ToRgb:
    """Full-range BT.601 (sYCC, what the camera is asked for) in 1/128 fixed point, chroma upsampled
    by pixel doubling. All intermediates are preallocated: no per-frame allocation."""

    def __init__(self, width: int, height: int, stride: int) -> None:
        if width % 2 or height % 2 or stride < width:
            raise SourceError(f"source.picamera2.lores_size: {width}x{height} (stride {stride}) must be even-sized")
        self.width, self.height, self.stride = width, height, stride
        hh, hw = height // 2, width // 2
        self.rgb = np.empty((height, width, 3), np.uint8)
        self._u = np.empty((hh, hw), np.int16)
        self._v = np.empty((hh, hw), np.int16)
        self._t = np.empty((hh, hw), np.int16)
        self._r = np.empty((hh, hw), np.int16)  # chroma terms, half resolution
        self._g = np.empty((hh, hw), np.int16)
        self._b = np.empty((hh, hw), np.int16)
        self._acc = np.empty((hh, 2, hw, 2), np.int16)

    def __call__(self, yuv: np.ndarray) -> np.ndarray:
        w, h, s = self.width, self.height, self.stride
        hh, hw = h // 2, w // 2
        flat = yuv.reshape(-1)
        if flat.size < h * s * 3 // 2:
            raise SourceError(f"picamera2: lores buffer of {flat.size} bytes is too small for {w}x{h} stride {s}")
        # Y: h rows of `stride` bytes; then U and V planes of h/2 rows with stride/2 bytes each.
        y = flat[: h * s].reshape(h, s)[:, :w]
        cs = s // 2
        u = flat[h * s : h * s + hh * cs].reshape(hh, cs)[:, :hw]
        v = flat[h * s + hh * cs : h * s + 2 * hh * cs].reshape(hh, cs)[:, :hw]
        np.subtract(u, 128, out=self._u, dtype=np.int16)
        np.subtract(v, 128, out=self._v, dtype=np.int16)
        # R = Y + 1.402 V;  G = Y - 0.344 U - 0.714 V;  B = Y + 1.772 U, in 1/128 steps (rounded),
        # which keeps every product inside int16.
        np.multiply(self._v, 179, out=self._r)
        np.add(self._r, 64, out=self._r)
        np.right_shift(self._r, 7, out=self._r)
        np.multiply(self._u, 44, out=self._g)
        np.multiply(self._v, 91, out=self._t)
        np.add(self._g, self._t, out=self._g)
        np.add(self._g, 64, out=self._g)
        np.right_shift(self._g, 7, out=self._g)
        np.negative(self._g, out=self._g)
        np.multiply(self._u, 227, out=self._b)
        np.add(self._b, 64, out=self._b)
        np.right_shift(self._b, 7, out=self._b)
        y4 = y.reshape(hh, 2, hw, 2)
        for channel, term in enumerate((self._r, self._g, self._b)):
            np.add(y4, term[:, None, :, None], out=self._acc, dtype=np.int16)
            np.clip(self._acc, 0, 255, out=self._acc)
            np.copyto(self.rgb[:, :, channel], self._acc.reshape(h, w), casting="unsafe")
        return self.rgb


class AvYuv420ToRgb:
    """swscale's unscaled YUV420P -> RGB24 (NEON on aarch64), reading the buffer in place with its stride."""

    def __init__(self, width: int, height: int, stride: int, av: Any) -> None:
        from av.video.reformatter import ColorRange, Colorspace, Interpolation, VideoReformatter

        if width % 2 or height % 2 or stride < width:
            raise SourceError(f"source.picamera2.lores_size: {width}x{height} (stride {stride}) must be even-sized")
        self.width, self.height, self.stride = width, height, stride
        self._av = av
        self._shape = (height * 3 // 2, stride)
        self._reformatter = VideoReformatter()
        # Enum values looked up once: PyAV's string lookups cost about 10 k instructions a frame.
        self._args: dict[str, Any] = {
            "format": "rgb24",
            "src_colorspace": Colorspace.ITU601,
            "src_color_range": ColorRange.JPEG,
            "dst_color_range": ColorRange.JPEG,
            "interpolation": Interpolation.POINT,
            "threads": 1,
        }

    def __call__(self, yuv: np.ndarray) -> np.ndarray:
        w, h = self.width, self.height
        if yuv.shape != self._shape:
            raise SourceError(f"picamera2: lores buffer of shape {yuv.shape} does not fit {w}x{h} stride {self.stride}")
        # from_numpy_buffer takes the (h*3/2, stride) layout picamera2 returns, chroma rows at half stride.
        frame = self._av.VideoFrame.from_numpy_buffer(yuv, format="yuv420p", width=w)
        rgb = self._reformatter.reformat(frame, **self._args)
        plane = rgb.planes[0]
        if plane.line_size != 3 * w:  # rows padded: let PyAV copy them out
            out: np.ndarray = rgb.to_ndarray()
            return out
        view: np.ndarray = np.frombuffer(cast(Any, plane), np.uint8)  # a view of the new frame: no copy
        return view[: h * w * 3].reshape(h, w, 3)


def make_converter(width: int, height: int, stride: int) -> Converter:
    """The fastest converter that works here: PyAV's swscale, else the NumPy one. PyAV is tried once on
    a grey frame, so an old PyAV without from_numpy_buffer or colour-range arguments falls back too."""
    numpy_path = Yuv420ToRgb(width, height, stride)
    try:
        import av

        converter = AvYuv420ToRgb(width, height, stride, av)
        grey = np.full((height * 3 // 2, stride), 128, np.uint8)
        if not np.array_equal(converter(grey), numpy_path(grey)):
            raise ValueError("swscale's output differs from the reference on a grey frame")
    except Exception as exc:  # ImportError, AttributeError/TypeError from an older PyAV
        log.info("YUV420 conversion in NumPy, about 13x the instructions of PyAV's swscale (%s)", exc)
        return numpy_path
    return converter
