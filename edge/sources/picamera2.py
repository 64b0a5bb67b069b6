"""Pi camera source: the ISP crops (ScalerCrop) and scales to a 128x128 lores stream; Pi 5 hands over RGB as is."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from edge.backoff import Backoff
from edge.errors import SourceError
from edge.log import PACED
from edge.model.preprocess import INPUT_SIZE, STOCK_CROP, prepare_array
from edge.model.region import NO_CROP, Crop
from edge.sources.frame import Frame
from edge.sources.mainstill import MainRing, MainStill
from edge.sources.yuv import Converter, make_converter
from edge.stats import SourceCounters

if TYPE_CHECKING:
    from edge.config import Picamera2SourceConfig

log = logging.getLogger("edge.sources.picamera2")

INSTALL_HINT = (
    "picamera2 is not importable: install it with `sudo apt install python3-picamera2` and create the venv "
    "with `python3 -m venv --system-site-packages` so the venv sees it (it is not on PyPI for the Pi's libcamera)"
)
# picamera2 control name -> the config key that sets it, for "Control X is not advertised" errors.
CONTROL_KEYS = {"FrameDurationLimits": "framerate", "ExposureTime": "exposure_time_us", "AnalogueGain": "analogue_gain"}


def import_picamera2() -> Any:
    try:
        import picamera2
    except ImportError as exc:
        raise SourceError(INSTALL_HINT) from exc
    return picamera2


def is_pi5() -> bool:
    """Pi 5 (the PiSP ISP) may deliver RGB on lores; Pi 4 and earlier (VC4) need YUV420."""
    try:
        from picamera2.platform import Platform, get_platform
    except ImportError:
        return False
    return bool(get_platform() == Platform.PISP)


def check_colour_space(camera_config: dict[str, Any]) -> None:
    """The converters assume full-range BT.601 (sYCC); a limited-range space would shift levels by up to 21."""
    cs = camera_config.get("colour_space")
    from libcamera import ColorSpace

    if cs is None or cs.ycbcrEncoding != ColorSpace.YcbcrEncoding.Rec601 or cs.range != ColorSpace.Range.Full:
        got = "none" if cs is None else f"{cs.ycbcrEncoding.name} {cs.range.name} range"
        raise SourceError(
            f"picamera2: libcamera set the lores colour space to {got}, not sYCC (full-range BT.601); use lores_format BGR888 on a Pi 5"
        )


class Picamera2Source:
    """The CSI camera's lores stream; camera faults (capture timeouts) reopen the camera with back-off."""

    live = True

    def __init__(
        self,
        config: Picamera2SourceConfig,
        crop: Crop = STOCK_CROP,
        stall_timeout_s: float = 10.0,
        keep_still: bool = False,
    ) -> None:
        """`keep_still` (snapshots on): capture the main stream with each lores frame and keep it for the
        frame's still (edge/sources/mainstill.py); off, the main stream is never read."""
        self.config = config
        self.keep_still = keep_still
        self._ring = MainRing() if keep_still else None
        self.crop = crop
        self.name = f"picamera2:{config.camera}"
        # A reopen must fit in the stall timeout: capture wait + first back-off step + opening.
        self.capture_wait_s = min(max(1.0, 3.0 / config.framerate), stall_timeout_s / 3)
        self.backoff = Backoff(config.reopen_max_s, first_s=min(1.0, stall_timeout_s / 4))
        self._cam: Any = None
        self._format = ""
        self._convert: Converter | None = None
        self._main: tuple[tuple[int, int], int] = ((0, 0), 0)  # main stream (size, stride), for the stills
        self._mapped_array: Any = None  # picamera2.MappedArray
        self._crop_left = crop  # what is still to cut in software (NO_CROP once the ISP did it)
        self._as_is = False
        self._read = 0
        self._reopens = 0
        self._errors = 0

    def _lores_format(self) -> str:
        fmt = self.config.lores_format
        if fmt == "auto":
            return "BGR888" if is_pi5() else "YUV420"
        if fmt != "YUV420" and not is_pi5():
            raise SourceError(f"source.picamera2.lores_format: {fmt} lores needs a Pi 5; use YUV420 or auto")
        return fmt

    def open(self) -> None:
        module = import_picamera2()
        self._format = self._lores_format()
        try:
            self._start(module)
        except IndexError as exc:  # picamera2: global_camera_info()[camera_num]
            raise SourceError(f"source.picamera2.camera: there is no camera {self.config.camera} (list them: `rpicam-hello --list-cameras`)") from exc
        except SourceError:
            raise
        except Exception as exc:
            raise SourceError(f"picamera2: cannot start camera {self.config.camera} ({exc}); is it connected and enabled?") from exc

    def _controls(self) -> dict[str, Any]:
        # No AeEnable: False would make both exposure AND gain manual (camera.cpp patchControlList);
        # picamera2's start_ already makes each manual when its value is non-zero.
        c = self.config
        controls: dict[str, Any] = {"FrameRate": c.framerate}
        if c.exposure_time_us:
            controls["ExposureTime"] = c.exposure_time_us
        if c.analogue_gain:
            controls["AnalogueGain"] = c.analogue_gain
        return controls

    def _start(self, module: Any) -> None:
        try:
            from libcamera import ColorSpace  # ships with picamera2
        except ImportError as exc:
            raise SourceError(INSTALL_HINT) from exc
        c = self.config
        cam = module.Picamera2(c.camera)
        self._mapped_array = module.MappedArray  # looked up once, not per frame
        try:
            config = cam.create_video_configuration(
                main=self._main_config(),
                lores={"size": tuple(c.lores_size), "format": self._format},
                raw=None,  # the default allocates full-size raw buffers nobody reads
                colour_space=ColorSpace.Sycc(),  # full-range BT.601: what the converters assume
                controls=self._controls(),
                buffer_count=2,  # we only want the newest frame; fewer buffers = less latency and memory
                display=None,
                encode=None,
            )
            try:
                cam.configure(config)
            except RuntimeError as exc:
                raise self._explain(exc) from exc
            lores, main = cam.camera_config["lores"], cam.camera_config["main"]
            self._main = (tuple(main["size"]), int(main["stride"]))
            if self._format == "YUV420" or self.keep_still:
                check_colour_space(cam.camera_config)
            self._set_crop(cam)
            cam.start()
            w, h = lores["size"]
            self._convert = make_converter(w, h, int(lores["stride"])) if self._format == "YUV420" else None
            self._as_is = (w, h) == (INPUT_SIZE, INPUT_SIZE) and self._crop_left.whole  # no resize, no crop
        except BaseException:
            self._close(cam)
            raise
        self._cam = cam

    def _main_config(self) -> dict[str, Any]:
        """Unread without keep_still. With it, YUV420 (the smallest buffer to copy per frame: 1.5 bytes a
        pixel, the default XBGR8888 is 4) at the lores aspect ratio inside main_size: both streams are
        scaled from the same ISP crop (ScalerCrop; on a Pi 5 we set both ScalerCrops alike), so any
        other shape would be the crop stretched."""
        c = self.config
        if not self.keep_still:
            return {"size": tuple(c.main_size)}
        (mw, mh), (lw, lh) = c.main_size, c.lores_size
        scale = min(mw / lw, mh / lh)
        return {"size": (max(2, int(lw * scale) // 2 * 2), max(2, int(lh * scale) // 2 * 2)), "format": "YUV420"}

    def _explain(self, exc: RuntimeError) -> Exception:
        for control, key in CONTROL_KEYS.items():
            if f"Control {control} is not advertised" in str(exc):
                return SourceError(f"source.picamera2.{key}: this camera has no {control} control; remove the setting")
        return exc

    def _set_crop(self, cam: Any) -> None:
        """Let the ISP cut the region of interest and the centre crop inside it (edge/model/region.py),
        so a 128x128 lores is exactly the model's input: no resize."""
        controls = cam.camera_controls
        if "ScalerCrop" not in controls or self.crop.whole:
            self._crop_left = self.crop
            return
        minimum, full, _default = controls["ScalerCrop"]
        crop = self.crop.scaler_crop(tuple(full), tuple(minimum)[2:])
        if "ScalerCrops" in controls:  # Pi 5: one crop per stream, set by configure(); replace the lores one
            cam.set_controls({"ScalerCrops": [crop, crop]})
        else:
            cam.set_controls({"ScalerCrop": crop})
        self._crop_left = NO_CROP

    @staticmethod
    def _close(cam: Any) -> None:
        # cancel_all_and_flush first: after a timed-out capture its job is still queued, and stop() (also
        # called by close()) is dispatched behind it and would wait forever.
        for step in (cam.cancel_all_and_flush, cam.stop, cam.close):
            try:
                step()
            except Exception:  # a failed camera may refuse to stop; closing is all we can do
                pass

    def _stop_camera(self) -> None:
        cam, self._cam = self._cam, None
        if cam is not None:
            self._close(cam)

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
                    log.warning("%s: reopen failed (%s)", self.name, exc, extra=PACED)
                continue
            try:
                # With a timeout: on a frontend timeout libcamera cancels the requests and a capture
                # without one would block forever (picamera2 only hands out completed requests).
                array, still = self._capture()
            except Exception as exc:  # TimeoutError, ISP errors
                self._errors += 1
                why = f"no frame within {self.capture_wait_s:g} s" if isinstance(exc, TimeoutError) else str(exc)
                log.warning("%s: capture failed (%s); reopening the camera", self.name, why)
                self._stop_camera()
                continue
            self.backoff.reset()
            self._read += 1
            return Frame(self._prepare(array), time.time(), self.name, still)
        return None

    def _capture(self) -> tuple[np.ndarray, MainStill | None]:
        """The lores array and, with keep_still, a still of the main stream of the same request."""
        if self._ring is None:
            return self._cam.capture_array("lores", wait=self.capture_wait_s), None
        # Both streams from one request (picamera2.py capture_arrays does the same, but copies main
        # into a new array each frame). MappedArray is the request's buffer itself (request.py
        # _make_array_shared): it is copied into the ring, and the request goes back to the camera.
        request = self._cam.capture_request(wait=self.capture_wait_s)
        try:
            lores = request.make_array("lores")
            with self._mapped_array(request, "main", write=False) as mapped:
                generation = self._ring.put(mapped.array)
        finally:
            request.release()
        return lores, MainStill(self._ring, generation, *self._main)

    def _prepare(self, array: np.ndarray) -> np.ndarray:
        if self._convert is not None:
            rgb = self._convert(array)
        elif self._format == "RGB888":  # DRM fourcc naming: RGB888 is B, G, R in memory
            rgb = np.ascontiguousarray(array[:, :, ::-1])
        else:  # BGR888 is R, G, B in memory: the buffer is the model's input as it is
            rgb = array
        if self._as_is:
            return rgb
        return prepare_array(np.ascontiguousarray(rgb), self._crop_left)

    def stats(self) -> SourceCounters:
        return SourceCounters(self._read, reopens=self._reopens, errors=self._errors)

    def interrupt(self) -> None:
        self.backoff.stop.set()

    def close(self) -> None:
        self._stop_camera()
