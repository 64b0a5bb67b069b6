"""A stand-in for the `picamera2` and `libcamera` packages (the only fake in the suite: no Pi camera here).

Each behaviour mirrors the real code, named in its comment: picamera2 at 3e6dff0 (picamera2/picamera2.py,
controls.py, job.py, request.py, utils.py, __init__.py), libcamera v0.7 (src/libcamera/pipeline/rpi/{common/
pipeline_base.cpp,vc4/vc4.cpp,pisp/pisp.cpp}, src/libcamera/camera.cpp, src/py/libcamera/
py_color_space.cpp), libpisp (src/libpisp/common/pisp_utils.cpp) and the Pi 4 ISP driver
(drivers/staging/vc04_services/bcm2835-isp/bcm2835-isp-fmts.h and bcm2835-v4l2-isp.c).
"""

from __future__ import annotations

import os
import sys
import threading
import time
import types
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

# fake_camera_package.py rewrites this import to `from libcamera import` when it installs the fake as packages.
from tests.support.fake_libcamera import ColorSpace, valid_colour_space

# Driving the fake from outside its process (a daemon under systemd in the system tests):
# $MNV1_EDGE_FAKE_CAMERA names a control file whose content is read at every capture; each new content
# applies once: "cancel ..." cancels the requests of the current session (as a frontend timeout does),
# "freeze ..." makes the current session repeat its last frame, "ok ..." clears both. Anything after
# the word only makes the content new, so the same fault can be injected again.
CONTROL_ENV = "MNV1_EDGE_FAKE_CAMERA"
SCENE_ENV = "MNV1_EDGE_FAKE_CAMERA_SCENE"  # an image file: what the sensor sees

PADDING = 0xA5  # garbage in the stride padding: a converter ignoring the stride shows it


class WouldBlockForever(BaseException):
    """Raised where the real library would block forever; a test hitting it has found a hang."""


def align(n: int, to: int = 64) -> int:
    return (n + to - 1) // to * to


def rgb_to_i420(rgb: np.ndarray, stride: int) -> np.ndarray:
    """Full-range BT.601 (sYCC) I420 with each plane row padded, shaped as request.py `_make_array_shared`
    does for YUV420: (h * 3 / 2, stride). The chroma planes' stride is half the luma stride (both ISPs)."""
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


class Platform(Enum):  # picamera2/platform.py
    VC4 = 0
    PISP = 1


class FakeCamera:
    """Shared knobs for a test: the scene, the platform, failures to inject, and what was called."""

    def __init__(self, scene: np.ndarray, platform: Platform = Platform.VC4, cameras: int = 1) -> None:
        self.scene = scene  # RGB image the sensor sees; its full size is the sensor's ScalerCropMaximum
        self.platform = platform
        self.cameras = cameras  # cameras attached (global_camera_info)
        self.noise = 0.0  # sigma of the sensor noise added to each frame; 0 = identical frames (a frozen camera)
        self.fail_opens = 0  # the next N Picamera2() constructions raise
        self.cancel_sessions = 0  # the next N camera sessions (open..close) have every request cancelled
        self.frozen_sessions = 0  # the next N sessions repeat their last frame (a hung ISP pipeline); reopening cures it
        self.lores_colour_space: ColorSpace | None = None  # force what libcamera settles on (None = the rules)
        self.opened = 0
        self.closed = 0
        self.flushes = 0
        self.configs: list[dict[str, Any]] = []
        self.started_with: list[dict[str, Any]] = []  # the controls each start() sent to libcamera
        self.made: list[str] = []  # the stream of every array the ISP output was read from, in order
        self.control: Path | None = None  # the control file (CONTROL_ENV), read at every capture
        self.pace = False  # capture_array blocks until the next frame at the configured rate, as the real one does
        self._control_seen = ""
        self._rng = np.random.default_rng(0)

    def poll_control(self) -> None:
        """Apply the control file's content once per new content (see CONTROL_ENV)."""
        if self.control is None:
            return
        try:
            text = self.control.read_text().strip()
        except OSError:
            return
        if text == self._control_seen:
            return
        self._control_seen = text
        command = text.split(maxsplit=1)[0] if text else ""
        if command == "cancel":
            self.cancel_sessions += 1
        elif command == "freeze":
            self.frozen_sessions += 1
        elif command == "ok":
            self.cancel_sessions = self.frozen_sessions = 0

    @property
    def sensor_size(self) -> tuple[int, int]:
        return (self.scene.shape[1], self.scene.shape[0])

    def advertised(self) -> dict[str, Any]:
        """camera_controls: name -> (min, max, default), as picamera2 exposes libcamera's ControlInfoMap."""
        w, h = self.sensor_size
        full = (0, 0, w, h)
        controls: dict[str, Any] = {
            "FrameDurationLimits": (33333, 1_000_000_000, 33333),
            "ExposureTime": (1, 66_666, 20_000),
            "AnalogueGain": (1.0, 16.0, 1.0),
            "AeEnable": (False, True, True),
            "ExposureTimeMode": (0, 1, 0),
            "AnalogueGainMode": (0, 1, 0),
            "NoiseReductionMode": (0, 4, 0),
            "ScalerCrop": ((0, 0, 64, 64), full, full),
        }
        if self.platform == Platform.PISP:  # pipeline_base.cpp: rpi::ScalerCrops only with two ISP crops (PiSP)
            controls["ScalerCrops"] = (full, full, full)
        return controls

    def frame(self, crop: tuple[int, int, int, int], size: tuple[int, int]) -> np.ndarray:
        """What the ISP makes of the scene: crop (sensor coordinates), resize, plus sensor noise."""
        from PIL import Image

        x, y, w, h = crop
        rgb = np.asarray(Image.fromarray(self.scene).resize(size, Image.Resampling.BILINEAR, box=(x, y, x + w, y + h)))
        if self.noise:
            rgb = np.clip(rgb + self._rng.normal(0, self.noise, rgb.shape), 0, 255).astype(np.uint8)
        return rgb


class _Job:
    """picamera2/job.py: a capture waits on a Future until the event loop gets a completed request."""

    def __init__(self) -> None:
        self.cancelled = threading.Event()


class Picamera2:
    camera: FakeCamera  # set by install()

    @classmethod
    def global_camera_info(cls) -> list[dict[str, Any]]:
        return [{"Model": "imx219", "Num": i, "Id": f"/base/soc/i2c0mux/i2c@{i}/imx219@10"} for i in range(cls.camera.cameras)]

    def __init__(self, camera_num: int = 0) -> None:
        cam = type(self).camera
        # picamera2.py __init__: `self.global_camera_info()[camera_num]` -> IndexError for a missing camera
        camera_num = self.global_camera_info()[camera_num]["Num"]
        if cam.fail_opens:
            cam.fail_opens -= 1
            raise RuntimeError("Camera __init__ sequence did not complete.")
        cam.opened += 1
        self.camera_num = camera_num
        self.camera_config: dict[str, Any] = {}
        self.camera_controls = cam.advertised()
        self.camera_properties = {"ScalerCropMaximum": (0, 0, *cam.sensor_size)}
        self.controls: dict[str, Any] = {}
        self.started = False
        self.is_open = True
        self._jobs: list[_Job] = []
        self._cancelled = False  # this session's requests all come back cancelled
        self._frozen = False
        self._last: dict[str, np.ndarray] = {}  # per stream: the frame a frozen session repeats
        self._held = 0  # requests from capture_request not yet released
        self._next_frame = 0.0

    def _check_controls(self, controls: dict[str, Any]) -> dict[str, Any]:
        """controls.py Controls.__setattr__: FrameRate is virtual (FrameDurationLimits); unknown -> RuntimeError."""
        out = {}
        for name, value in controls.items():
            if name == "FrameRate":
                name, value = "FrameDurationLimits", (int(1_000_000 / value), int(1_000_000 / value))
            if name not in self.camera_controls:
                raise RuntimeError(f"Control {name} is not advertised by libcamera")
            out[name] = value
        return out

    @staticmethod
    def _stream(defaults: dict[str, Any], updates: dict[str, Any] | None) -> dict[str, Any] | None:
        """picamera2.py _make_initial_stream_config + align_stream(optimal=False): sizes rounded down to even."""
        if updates is None:
            return None
        for key in updates:
            if key not in ("format", "size", "stride", "preserve_ar"):
                raise ValueError(f"Bad key {key!r}: valid stream configuration keys are ('format', 'size', 'stride', 'preserve_ar')")
        stream = {**defaults, **updates}
        w, h = stream["size"]
        stream["size"] = (w - w % 2, h - h % 2)
        return stream

    def create_video_configuration(
        self,
        main: dict[str, Any] | None = None,
        lores: dict[str, Any] | None = None,
        raw: Any = "default",  # picamera2's default is raw={} (a raw stream IS allocated); None = no raw stream
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
        main_s = self._stream({"format": "XBGR8888", "size": (1280, 720), "preserve_ar": True}, main or {})
        assert main_s is not None
        lores_s = self._stream({"format": "YUV420", "size": main_s["size"], "preserve_ar": False}, lores)
        raw_s = None if raw is None else {"format": "SRGGB10_CSI2P", "size": main_s["size"], **(raw if isinstance(raw, dict) else {})}
        if colour_space is None:  # "Choose default colour space according to the video resolution."
            colour_space = ColorSpace.Smpte170m() if main_s["size"][0] < 1280 or main_s["size"][1] < 720 else ColorSpace.Rec709()
        return {
            "use_case": use_case,
            "transform": transform,
            "colour_space": colour_space,
            "buffer_count": buffer_count,
            "queue": queue,
            "main": main_s,
            "lores": lores_s,
            "raw": raw_s,
            "controls": controls or {},
            "sensor": sensor or {},
            "display": display,
            "encode": encode,
        }

    def configure(self, config: dict[str, Any]) -> None:
        cam = type(self).camera
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        config = dict(config)
        if not isinstance(config["colour_space"], ColorSpace):  # check_camera_config
            raise RuntimeError("Colour space has incorrect type")
        main, lores = config["main"], config["lores"]
        for stream in (main, lores):
            if stream is not None and (stream["size"][0] % 2 or stream["size"][1] % 2):  # check_stream_config
                raise RuntimeError("width and height should be even")
        if lores is not None:
            if lores["size"][0] > main["size"][0] or lores["size"][1] > main["size"][1]:
                raise RuntimeError("lores stream dimensions may not exceed main stream")
            if cam.platform == Platform.VC4 and lores["format"] not in ("YUV420", "YVU420"):
                raise RuntimeError("lores stream must be YUV")
            lores["size"] = self._clamp(lores["size"], main["size"])
            self._set_stride(lores)
        self._set_stride(main)
        # validateColorSpaces: every stream gets the colour space matched (primaries + transfer) from the
        # first one; picamera2 reads it back from stream 0 through utils.colour_space_from_libcamera.
        config["colour_space"] = cam.lores_colour_space or valid_colour_space(config["colour_space"])
        self.controls = self._check_controls(config["controls"])
        if "ScalerCrops" in self.camera_controls:  # picamera2.py configure_: sets ScalerCrops itself
            full = self.camera_controls["ScalerCrop"][1]
            self.controls["ScalerCrops"] = [full, full]
        cam.configs.append(config)
        self.camera_config = config

    def _clamp(self, size: tuple[int, int], main: tuple[int, int]) -> tuple[int, int]:
        """The ISP's minimum output: bcm2835-isp MIN_DIM 64 (Pi 4); pisp.cpp platformValidate: 1/64 of the
        sensor size, aspect ratio kept, even (Pi 5). Then bounded to the main stream."""
        w, h = size
        if type(self).camera.platform == Platform.VC4:
            w, h = max(w, 64), max(h, 64)
        else:
            sw, sh = type(self).camera.sensor_size
            mw, mh = ((sw + 63) // 64 + 1) & ~1, ((sh + 63) // 64 + 1) & ~1
            if w < mw:
                h, w = (h * mw // w + 1) & ~1, mw
            if h < mh:
                w, h = (w * mh // h + 1) & ~1, mh
        return (min(w, main[0]), min(h, main[1]))

    def _set_stride(self, stream: dict[str, Any]) -> None:
        """picamera2.py _update_stream_config: "stride" and "framesize" from libcamera. Pi 4: bcm2835-isp-fmts.h
        bytesperline_align 64 (YUV420), 32 (RGB24, XBGR); chroma rows are half the luma stride. Pi 5: pisp.cpp
        computeOptimalStride: libpisp aligns every plane to 64 bytes and the YUV420 luma stride is twice the
        chroma one (160 wide -> 2 * align(80, 64) = 256)."""
        w, h = stream["size"]
        bpp = {"YUV420": 1, "YVU420": 1, "RGB888": 3, "BGR888": 3, "XBGR8888": 4, "XRGB8888": 4}[stream["format"]]
        if type(self).camera.platform == Platform.VC4:
            stride = align(w * bpp, 64 if bpp == 1 else 32)
        else:
            stride = 2 * align(w // 2, 64) if bpp == 1 else align(w * bpp, 64)
        stream["stride"] = stride
        stream["framesize"] = stride * h * 3 // 2 if bpp == 1 else stride * h

    def set_controls(self, controls: dict[str, Any]) -> None:
        self.controls.update(self._check_controls(controls))

    def start(self) -> None:
        if not self.camera_config:
            raise RuntimeError("Camera has not been configured")
        # picamera2.py start_: ExposureTimeMode / AnalogueGainMode follow ExposureTime / AnalogueGain when given.
        sent = dict(self.controls)
        if "ExposureTime" in sent:
            sent["ExposureTimeMode"] = 0 if sent["ExposureTime"] == 0 else 1
        if "AnalogueGain" in sent:
            sent["AnalogueGainMode"] = 0 if sent["AnalogueGain"] == 0 else 1
        # camera.cpp patchControlList: AeEnable sets any mode not given explicitly (False -> manual).
        if "AeEnable" in sent:
            sent.setdefault("ExposureTimeMode", 0 if sent["AeEnable"] else 1)
            sent.setdefault("AnalogueGainMode", 0 if sent["AeEnable"] else 1)
        type(self).camera.started_with.append(sent)
        self.started = True

    def _crop(self, name: str) -> tuple[int, int, int, int]:
        """pipeline_base.cpp applyScalerCrop: rpi::ScalerCrops per stream when given, else ScalerCrop for all."""
        crops = self.controls.get("ScalerCrops")
        if crops is not None:
            return tuple(crops[1 if name == "lores" else 0])  # type: ignore[return-value]
        return tuple(self.controls.get("ScalerCrop", self.camera_controls["ScalerCrop"][2]))  # type: ignore[return-value]

    def _next_request(self, wait: Any) -> None:
        """picamera2.py dispatch_functions: wait for the next completed request, as capture_array_,
        capture_arrays_and_metadata_ and capture_request_ all do."""
        cam = type(self).camera
        cam.poll_control()
        self._cancelled = self._cancelled or bool(cam.cancel_sessions)
        # Requests the caller still holds are not requeued (request.py release): with all of them held no
        # request completes, like a cancelled session.
        starved = self._held >= self.camera_config.get("buffer_count", 6)
        if not self.started or self._cancelled or starved:
            # dispatch_functions queues a Job that only a completed request finishes; cameraTimeout()
            # cancels every request, so none comes. wait=None/True blocks forever; a number raises
            # TimeoutError (Future.result(timeout)).
            self._jobs.append(_Job())
            if wait is None or wait is True:
                raise WouldBlockForever("a capture without a timeout never returns once requests are cancelled")
            self._jobs[-1].cancelled.wait(float(wait))
            raise TimeoutError()
        if cam.pace:
            self._wait_for_frame()

    def capture_array(self, name: str = "main", wait: Any = None) -> np.ndarray:
        """picamera2.py capture_array_: make_array of one stream (a copy), then release the request."""
        self._next_request(wait)
        return self._array(name).copy()  # request.py make_array: always a copy

    def capture_arrays(self, names: list[str] | None = None, wait: Any = None) -> tuple[list[np.ndarray], dict[str, Any]]:
        """picamera2.py capture_arrays_and_metadata_: ([make_array(name) for name in names], metadata) of ONE request."""
        self._next_request(wait)
        return [self._array(name).copy() for name in names or ["main"]], {"SensorTimestamp": time.monotonic_ns()}

    def capture_request(self, wait: Any = None, signal_function: Any = None, flush: Any = None) -> CompletedRequest:
        """picamera2.py capture_request_: the caller holds the request (all its streams) until release()."""
        self._next_request(wait)
        self._held += 1
        return CompletedRequest(self)

    def _array(self, name: str) -> np.ndarray:
        """The named stream of the current request, as the camera buffer (not a copy); recorded in `made`."""
        cam = type(self).camera
        if name not in self.camera_config or self.camera_config[name] is None:
            raise RuntimeError(f"Stream {name!r} is not defined")  # request.py make_array
        if cam.frozen_sessions and name in self._last:
            self._frozen = True
            return self._last[name]
        cam.made.append(name)
        self._last[name] = self._make_array(name)
        return self._last[name]

    def _wait_for_frame(self) -> None:
        """picamera2 hands out the next completed request: one per frame duration (FrameDurationLimits, us)."""
        period = self.controls.get("FrameDurationLimits", (33333, 33333))[0] / 1e6
        now = time.monotonic()
        self._next_frame = max(self._next_frame + period, now)
        time.sleep(self._next_frame - now)

    def _make_array(self, name: str) -> np.ndarray:
        """request.py _make_array_shared + make_array: YUV420 as (h*3/2, stride); RGB as (h, w, 3) contiguous."""
        stream = self.camera_config[name]
        rgb = type(self).camera.frame(self._crop(name), stream["size"])
        fmt = stream["format"]
        if fmt == "YUV420":
            return rgb_to_i420(rgb, stream["stride"])
        if fmt == "RGB888":  # DRM fourcc naming: RGB888 is B, G, R in memory
            return np.ascontiguousarray(rgb[:, :, ::-1])
        if fmt == "BGR888":  # ... and BGR888 is R, G, B
            return np.ascontiguousarray(rgb)
        raise RuntimeError("Format " + fmt + " not supported")

    def cancel_all_and_flush(self) -> None:
        for job in self._jobs:
            job.cancelled.set()
        self._jobs = []
        type(self).camera.flushes += 1

    def stop(self) -> None:
        if not self.started:
            return
        if self._jobs:  # stop() is dispatched behind the stuck capture job and waits for it
            raise WouldBlockForever("stop() with a capture job still queued never returns; call cancel_all_and_flush() first")
        self.started = False

    def close(self) -> None:
        if not self.is_open:
            return
        self.stop()  # close() stops first: the same hang
        self.is_open = False
        cam = type(self).camera
        cam.closed += 1
        if self._cancelled:
            cam.cancel_sessions -= 1
        if self._frozen:
            cam.frozen_sessions -= 1


class CompletedRequest:
    """request.py CompletedRequest: holds one request's buffers until release(); a reference count of 1."""

    def __init__(self, picam2: Picamera2) -> None:
        self.picam2 = picam2
        self.ref_count = 1
        self.config = picam2.camera_config.copy()
        self._arrays: dict[str, np.ndarray] = {}  # each stream's buffer, made when first read

    def buffer(self, name: str) -> np.ndarray:
        """The stream's camera buffer shaped as _make_array_shared does (no copy)."""
        if self.ref_count == 0:
            raise AssertionError("request already released")  # request.py _MappedBuffer: assert request.request is not None
        if name not in self._arrays:
            self._arrays[name] = self.picam2._array(name)
        return self._arrays[name]

    def make_array(self, name: str) -> np.ndarray:
        """request.py make_array: a copy; after release config is {} -> "Stream ... is not defined"."""
        if self.config.get(name) is None:
            raise RuntimeError(f"Stream {name!r} is not defined")
        return self.buffer(name).copy()

    def release(self) -> None:
        """request.py release: at ref_count 0 the buffers go back to the camera and config is emptied."""
        self.ref_count -= 1
        if self.ref_count < 0:
            raise RuntimeError("CompletedRequest: lock now has negative ref_count")
        if self.ref_count == 0:
            self.picam2._held -= 1
            self.config = {}
            self._arrays = {}


class MappedArray:
    """request.py MappedArray: `with MappedArray(request, name) as m:` m.array IS the camera buffer (no copy),
    valid only inside the block (__exit__ deletes it)."""

    def __init__(self, request: CompletedRequest, stream: str, reshape: bool = True, write: bool = True) -> None:
        self._request, self._stream = request, stream
        self._array: np.ndarray | None = None

    def __enter__(self) -> MappedArray:
        self._array = self._request.buffer(self._stream)
        return self

    def __exit__(self, *exc: object) -> None:
        self._array = None

    @property
    def array(self) -> np.ndarray | None:
        return self._array


def camera_from_env() -> FakeCamera:
    """The camera of a fake installed as a package: scene from SCENE_ENV (else a gradient), sensor noise,
    frames at the configured rate, and faults injected through the CONTROL_ENV file."""
    if os.environ.get(SCENE_ENV):
        from PIL import Image

        scene = np.asarray(Image.open(os.environ[SCENE_ENV]).convert("RGB").resize((640, 480), Image.Resampling.BILINEAR))
    else:
        x = np.linspace(0, 255, 640, dtype=np.float32)
        y = np.linspace(0, 255, 480, dtype=np.float32)[:, None]
        scene = np.stack(np.broadcast_arrays(x + 0 * y, y + 0 * x, (x + y) / 2), axis=-1).astype(np.uint8)
    camera = FakeCamera(scene)
    camera.noise = 2.0  # a live sensor: no two frames alike, so only an injected freeze looks frozen
    camera.pace = True
    camera.control = Path(os.environ[CONTROL_ENV]) if os.environ.get(CONTROL_ENV) else None
    return camera


def install(monkeypatch: Any, camera: FakeCamera) -> None:
    """Make `import picamera2` (and picamera2.platform, libcamera) find this fake for one test."""
    module = types.ModuleType("picamera2")
    cls = type("Picamera2", (Picamera2,), {"camera": camera})
    module.Picamera2 = cls  # type: ignore[attr-defined]
    module.MappedArray = MappedArray  # type: ignore[attr-defined]
    module.CompletedRequest = CompletedRequest  # type: ignore[attr-defined]
    platform = types.ModuleType("picamera2.platform")
    platform.Platform = Platform  # type: ignore[attr-defined]
    platform.get_platform = lambda: camera.platform  # type: ignore[attr-defined]
    module.platform = platform  # type: ignore[attr-defined]
    libcamera = types.ModuleType("libcamera")
    libcamera.ColorSpace = ColorSpace  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "picamera2", module)
    monkeypatch.setitem(sys.modules, "picamera2.platform", platform)
    monkeypatch.setitem(sys.modules, "libcamera", libcamera)
