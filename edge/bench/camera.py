"""The camera paths' per-frame preprocessing as benchmark steps, for `mnv1-edge bench` (x86 or a Pi)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from edge.model.preprocess import INPUT_SIZE


def camera_steps(frame: np.ndarray, jpeg: Path | None = None) -> dict[str, Callable[[], object]]:
    """Name -> step, each one frame's work: the 128x128 YUV420 lores converted by swscale (when PyAV is
    importable) and by NumPy, Pi 5's RGB888 flip (BGR888 needs nothing), the frozen-frame check, the moved-camera check and,
    with PyAV and a JPEG, an MJPEG webcam frame decoded at full and at 1/4 scale (lowres)."""
    from edge.model.viewref import ShiftEstimator, grey
    from edge.sources.frozen import FrameDiff
    from edge.sources.yuv import AvYuv420ToRgb, Yuv420ToRgb, make_converter

    n = INPUT_SIZE
    yuv = np.empty((n * 3 // 2, n), np.uint8)
    yuv[:n] = frame[:, :, 1]  # any plausible bytes: the cost does not depend on the values
    yuv[n:] = frame[: n // 2, :, 0]
    steps: dict[str, Callable[[], object]] = {}
    converter = make_converter(n, n, n)
    if isinstance(converter, AvYuv420ToRgb):
        steps["camera_yuv420_swscale"] = lambda: converter(yuv)
    numpy_path = Yuv420ToRgb(n, n, n)
    steps["camera_yuv420_numpy"] = lambda: numpy_path(yuv)
    steps["camera_rgb888_flip"] = lambda: np.ascontiguousarray(frame[:, :, ::-1])
    diff = FrameDiff()
    steps["camera_frozen_check"] = lambda: diff.changed(frame, 0.0)
    view = ShiftEstimator(np.stack([grey(frame)] * 8))  # a view's references; the cost does not depend on their values
    steps["camera_view_check"] = lambda: view.estimate(frame)  # once per source.view_check_s, not per frame
    if isinstance(converter, AvYuv420ToRgb):
        steps["v4l2_yuyv320x240_prepare"] = _yuyv_prepare(frame)
    if jpeg is not None and isinstance(converter, AvYuv420ToRgb):
        steps["mjpeg720_decode_full"] = _mjpeg_decoder(jpeg, 0)
        steps["mjpeg720_decode_lowres2"] = _mjpeg_decoder(jpeg, 2)
    return steps


def _yuyv_prepare(frame: np.ndarray) -> Callable[[], object]:
    """A webcam's raw 320x240 YUYV frame made into the model's input, as the v4l2 source does it."""
    import av

    from edge.model.preprocess import STOCK_CROP
    from edge.sources.video import prepare_av_frame

    yuyv = np.resize(frame.reshape(-1), 240 * 320 * 2).reshape(240, 320, 2)
    picture = av.VideoFrame.from_ndarray(yuyv, format="yuyv422")
    return lambda: prepare_av_frame(picture, STOCK_CROP)


def _mjpeg_decoder(jpeg: Path, lowres: int) -> Callable[[], object]:
    """One webcam MJPEG frame through FFmpeg's decoder, as the v4l2 source decodes it (to RGB)."""
    import av

    context = av.CodecContext.create("mjpeg", "r")
    context.options = {"lowres": str(lowres)}
    data = jpeg.read_bytes()
    return lambda: context.decode(av.Packet(data))[0].to_ndarray(format="rgb24")
