"""A stand-in for the `picamera2` package (the only fake in the suite: no Pi camera here).

It mirrors the calls the source makes, with the real library's shapes: create_video_configuration
(main=, lores=, controls=, ...) returns a config dict, configure() fills in strides aligned to 64
bytes as libcamera does, capture_array("lores") returns YUV420 as a (h*3/2, stride) array with
padding bytes (the real make_array layout) or, for RGB888, an (h, w, 3) array in B, G, R order.
"""

from __future__ import annotations

import sys
import types
from enum import Enum
from typing import Any

import numpy as np

PADDING = 0xA5  # garbage in the stride padding: a converter ignoring the stride shows it


def align(n: int, to: int = 64) -> int:
    return (n + to - 1) // to * to


def rgb_to_i420(rgb: np.ndarray, stride: int) -> np.ndarray:
    """Full-range BT.601 I420 with each plane row padded to the stride, shaped as picamera2 does."""
    h, w, _ = rgb.shape
    f = rgb.astype(np.float64)
    y = 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]
    u = -0.168736 * f[..., 0] - 0.331264 * f[..., 1] + 0.5 * f[..., 2] + 128
    v = 0.5 * f[..., 0] - 0.418688 * f[..., 1] - 0.081312 * f[..., 2] + 128
    u = u.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    v = v.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    out = np.full(h * stride * 3 // 2, PADDING, np.uint8)
    out[: h * stride].reshape(h, stride)[:, :w] = np.clip(np.rint(y), 0, 255)
    cs = stride // 2
    base = h * stride
    out[base : base + h // 2 * cs].reshape(h // 2, cs)[:, : w // 2] = np.clip(np.rint(u), 0, 255)
    base += h // 2 * cs
    out[base : base + h // 2 * cs].reshape(h // 2, cs)[:, : w // 2] = np.clip(np.rint(v), 0, 255)
    return out.reshape(h * 3 // 2, stride)


class Platform(Enum):
    VC4 = 0
    PISP = 1


class FakeCamera:
    """Shared knobs for a test: the scene, the platform, failures to inject, and what was called."""

    def __init__(self, scene: np.ndarray, platform: Platform = Platform.VC4) -> None:
        self.scene = scene  # RGB image the 'sensor' sees, resized to the lores size on demand
        self.platform = platform
        self.fail_captures = 0  # the next N capture_array calls raise
        self.fail_opens = 0  # the next N Picamera2() constructions raise
        self.opened = 0
        self.closed = 0
        self.controls: dict[str, Any] = {}
        self.configs: list[dict[str, Any]] = []


class Picamera2:
    camera: FakeCamera  # set by install()

    def __init__(self, camera_num: int = 0) -> None:
        cam = type(self).camera
        if cam.fail_opens:
            cam.fail_opens -= 1
            raise RuntimeError("Camera __init__ sequence did not complete.")
        cam.opened += 1
        self.camera_num = camera_num
        self.camera_config: dict[str, Any] | None = None
        self.started = False

    def create_video_configuration(
        self,
        main: dict[str, Any] | None = None,
        lores: dict[str, Any] | None = None,
        raw: dict[str, Any] | None = None,
        transform: Any = None,
        colour_space: Any = None,
        buffer_count: int = 6,
        controls: dict[str, Any] | None = None,
        display: str | None = "main",
        encode: str | None = "main",
        queue: bool = True,
        sensor: dict[str, Any] | None = None,
        use_case: str = "video",
    ) -> dict[str, Any]:
        main = {"format": "XBGR8888", "size": (1280, 720), **(main or {})}
        config: dict[str, Any] = {"use_case": use_case, "main": main, "lores": None, "buffer_count": buffer_count, "controls": controls or {}}
        if lores is not None:
            config["lores"] = {"format": "YUV420", "size": (640, 480), **lores}
        return config

    def configure(self, config: dict[str, Any]) -> None:
        lores = config["lores"]
        if lores is not None:
            w, h = lores["size"]
            mw, mh = config["main"]["size"]
            if w > mw or h > mh:
                raise RuntimeError("lores stream dimensions may not exceed main stream")
            if lores["format"] != "YUV420" and type(self).camera.platform == Platform.VC4:
                raise RuntimeError("lores stream must be YUV")
            lores["stride"] = align(w) if lores["format"] == "YUV420" else align(w * 3)
        type(self).camera.configs.append(config)
        self.camera_config = config

    def start(self) -> None:
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        self.started = True

    def set_controls(self, controls: dict[str, Any]) -> None:
        type(self).camera.controls.update(controls)

    def capture_array(self, name: str = "main") -> np.ndarray:
        cam = type(self).camera
        if not self.started or self.camera_config is None:
            raise RuntimeError("camera not started")
        if cam.fail_captures:
            cam.fail_captures -= 1
            raise RuntimeError("Camera frontend has timed out!")
        from PIL import Image

        stream = self.camera_config[name]
        w, h = stream["size"]
        rgb = np.asarray(Image.fromarray(cam.scene).resize((w, h), Image.Resampling.BILINEAR))
        if stream["format"] == "YUV420":
            return rgb_to_i420(rgb, stream["stride"])
        return np.ascontiguousarray(rgb[:, :, ::-1])  # RGB888 is B, G, R in memory

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        type(self).camera.closed += 1
        self.started = False


def install(monkeypatch: Any, camera: FakeCamera) -> None:
    """Make `import picamera2` (and picamera2.platform) find this fake for one test."""
    module = types.ModuleType("picamera2")
    cls = type("Picamera2", (Picamera2,), {"camera": camera})
    module.Picamera2 = cls  # type: ignore[attr-defined]
    platform = types.ModuleType("picamera2.platform")
    platform.Platform = Platform  # type: ignore[attr-defined]
    platform.get_platform = lambda: camera.platform  # type: ignore[attr-defined]
    module.platform = platform  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "picamera2", module)
    monkeypatch.setitem(sys.modules, "picamera2.platform", platform)
    monkeypatch.setitem(sys.modules, "libcamera", None)  # not on this machine; the source copes
