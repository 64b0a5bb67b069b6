"""Pi camera source: picamera2's low-resolution stream, YUV420 → RGB in NumPy into preallocated buffers."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from edge.errors import SourceError
from edge.model.preprocess import prepare_array
from edge.sources import Frame
from edge.sources.backoff import Backoff

if TYPE_CHECKING:
    from edge.config import Picamera2SourceConfig

log = logging.getLogger("edge.sources.picamera2")

INSTALL_HINT = (
    "picamera2 is not importable: install it with `sudo apt install python3-picamera2` and create the venv "
    "with `python3 -m venv --system-site-packages` so the venv sees it (it is not on PyPI for the Pi's libcamera)"
)


def import_picamera2() -> Any:
    try:
        import picamera2
    except ImportError as exc:
        raise SourceError(INSTALL_HINT) from exc
    return picamera2


def is_pi5() -> bool:
    """Pi 5 (the PiSP ISP) may deliver RGB888 on lores; Pi 4 and earlier (VC4) need YUV420."""
    try:
        from picamera2.platform import Platform, get_platform
    except ImportError:
        return False
    return bool(get_platform() == Platform.PISP)


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


class Picamera2Source:
    """The CSI camera's lores stream (the ISP scales for free); camera errors reopen with back-off."""

    live = True

    def __init__(self, config: Picamera2SourceConfig, crop_fraction: float = 0.875) -> None:
        self.config = config
        self.crop_fraction = crop_fraction
        self.name = f"picamera2:{config.camera}"
        self.backoff = Backoff(config.reopen_max_s)
        self._cam: Any = None
        self._format = ""
        self._convert: Yuv420ToRgb | None = None
        self._rgb: np.ndarray | None = None
        self._read = 0
        self._reopens = 0
        self._errors = 0

    def _lores_format(self) -> str:
        fmt = self.config.lores_format
        if fmt == "auto":
            return "RGB888" if is_pi5() else "YUV420"
        if fmt == "RGB888" and not is_pi5():
            raise SourceError("source.picamera2.lores_format: RGB888 lores needs a Pi 5; use YUV420 or auto")
        return fmt

    def open(self) -> None:
        module = import_picamera2()
        self._format = self._lores_format()
        try:
            self._start(module)
        except SourceError:
            raise
        except Exception as exc:
            raise SourceError(f"picamera2: cannot start camera {self.config.camera} ({exc}); is it connected and enabled?") from exc

    def _start(self, module: Any) -> None:
        c = self.config
        cam = module.Picamera2(c.camera)
        try:
            controls: dict[str, Any] = {"FrameRate": c.framerate}
            if c.exposure_time_us:
                controls["ExposureTime"] = c.exposure_time_us
                controls["AeEnable"] = False
            if c.analogue_gain:
                controls["AnalogueGain"] = c.analogue_gain
            kwargs: dict[str, Any] = {
                "main": {"size": tuple(c.main_size)},
                "lores": {"size": tuple(c.lores_size), "format": self._format},
                "controls": controls,
                "buffer_count": 2,  # we only want the newest frame; fewer buffers = less latency and memory
            }
            try:
                from libcamera import ColorSpace  # ships with picamera2

                kwargs["colour_space"] = ColorSpace.Sycc()  # full range BT.601: what the converter assumes
            except ImportError:
                pass
            cam.configure(cam.create_video_configuration(**kwargs))
            cam.start()
            cam.set_controls(controls)
            lores = cam.camera_config["lores"]
            w, h = lores["size"]
            if self._format == "YUV420":
                self._convert = Yuv420ToRgb(w, h, int(lores["stride"]))
            else:
                self._rgb = np.empty((h, w, 3), np.uint8)
        except BaseException:
            cam.close()
            raise
        self._cam = cam

    def _stop_camera(self) -> None:
        cam, self._cam = self._cam, None
        if cam is not None:
            for step in (cam.stop, cam.close):
                try:
                    step()
                except Exception:  # a failed camera may refuse to stop; closing is all we can do
                    pass

    def read(self) -> Frame | None:
        module = None
        while not self.backoff.stop.is_set():
            if self._cam is None:
                if not self.backoff.wait():
                    return None
                self._reopens += 1
                try:
                    module = module or import_picamera2()
                    self._start(module)
                    log.info("%s: camera reopened", self.name)
                except Exception as exc:
                    log.warning("%s: reopen failed (%s)", self.name, exc)
                    self._stop_camera()
                continue
            try:
                array = self._cam.capture_array("lores")
            except Exception as exc:  # camera timeouts, cable faults, ISP errors
                self._errors += 1
                log.warning("%s: capture failed (%s); reopening the camera", self.name, exc)
                self._stop_camera()
                continue
            self.backoff.reset()
            self._read += 1
            return Frame(self._prepare(array), time.time(), self.name)
        return None

    def _prepare(self, array: np.ndarray) -> np.ndarray:
        if self._convert is not None:
            rgb = self._convert(array)
        else:
            assert self._rgb is not None
            # picamera2's "RGB888" is laid out B, G, R in memory (DRM fourcc naming).
            np.copyto(self._rgb, array[:, :, 2::-1])
            rgb = self._rgb
        return prepare_array(rgb, 128, self.crop_fraction)

    def stats(self) -> dict[str, int]:
        return {"read": self._read, "reopens": self._reopens, "errors": self._errors}

    def interrupt(self) -> None:
        self.backoff.stop.set()

    def close(self) -> None:
        self._stop_camera()
