"""The `[source]` settings: which frames the model sees."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from edge.config.fields import Need, section, setting
from edge.model.region import roi_problem


@dataclass(frozen=True)
class ImagesSourceConfig:
    path: str = setting("", "a folder, a glob (e.g. /srv/in/*.jpg) or one image file")
    loop: bool = setting(False, "start again at the first image after the last one")
    draft: bool = setting(True, "decode JPEGs at reduced scale in the DCT domain (much faster, same input)")
    max_pixels: int = setting(
        16_000_000, "refuse (skip) an image whose decoded size exceeds this many pixels, checked before decoding (JPEGs after drafting)", ge=16384
    )


@dataclass(frozen=True)
class VideoSourceConfig:
    url: str = setting("", "a video file path, or an rtsp:// / http:// stream URL")
    loop: bool = setting(False, "restart a file at its end (streams always reconnect)")
    reconnect_max_s: float = setting(30.0, "cap of the exponential back-off between stream reconnects", gt=0)


@dataclass(frozen=True)
class V4l2SourceConfig:
    device: str = setting("/dev/video0", "V4L2 device node of the USB webcam")
    width: int = setting(0, "capture width; 0 = the smallest native size whose centre crop covers the model input", ge=0, le=8192)
    height: int = setting(0, "capture height; 0 = chosen with width", ge=0, le=8192)
    input_format: Literal["auto", "yuyv422", "mjpeg"] = setting("auto", "auto = raw YUYV when a small enough size exists (no decoding), else MJPEG")
    lowres: int = setting(0, "MJPEG decode at 1/2^lowres scale; chosen automatically when width and height are 0", ge=0, le=3)
    framerate: float = setting(15.0, "capture frame rate requested from the camera (capped at source.max_fps when that is set)", gt=0, le=1000)

    def check(self, need: Need) -> None:
        need((self.width == 0) == (self.height == 0), "width", "set width and height together (or both 0 = automatic)")


@dataclass(frozen=True)
class Picamera2SourceConfig:
    camera: int = setting(0, "camera number for Picamera2(camera_num)", ge=0)
    main_size: tuple[int, int] = setting((640, 480), "main stream size; only the lores stream is read", ge=16, le=8192)
    lores_size: tuple[int, int] = setting(
        (128, 128), "lores stream size; the ISP crops (ScalerCrop) and scales to it for free: 128x128 = the model input, no resize", ge=16, le=8192
    )
    lores_format: Literal["auto", "YUV420", "RGB888", "BGR888"] = setting(
        "auto", "auto = BGR888 on Pi 5 (R,G,B bytes: no conversion at all), YUV420 on Pi 4 and earlier"
    )
    framerate: float = setting(10.0, "sensor frame rate (FrameRate control)", gt=0, le=1000)
    exposure_time_us: int = setting(0, "fixed exposure in microseconds; 0 = automatic exposure", ge=0)
    analogue_gain: float = setting(0.0, "fixed analogue gain; 0 = automatic", ge=0)
    reopen_max_s: float = setting(30.0, "cap of the exponential back-off between camera reopen attempts", gt=0)


@dataclass(frozen=True)
class SyntheticSourceConfig:
    frames: int = setting(0, "number of frames, 0 = endless", ge=0)
    seed: int = setting(0, "random seed: the same seed gives the same frames", ge=0, le=2**32 - 1)
    fps: float = setting(0.0, "frame rate, 0 = as fast as they are consumed", ge=0)


@dataclass(frozen=True)
class SourceConfig:
    kind: Literal["picamera2", "v4l2", "video", "images", "synthetic"] = setting("picamera2", "which source to read frames from")
    # Checked by region.roi_problem in `check`, the one rule for source.roi and --roi.
    roi: tuple[float, float, float, float] = setting(
        (0.0, 0.0, 1.0, 1.0),
        "region the model looks at: [x, y, width, height], fractions of the full frame (each between 0 and 1, inside the frame); "
        "the model's centre crop applies inside it",
    )
    max_fps: float = setting(0.0, "cap on classified frames per second to save CPU; 0 = no cap", ge=0)
    frozen_threshold: float = setting(
        0.0,
        "live sources: frames whose mean absolute difference (0-255 levels, sparse grid) from the last changed frame stays at or below this "
        "for stall_timeout_s are frozen and the source is reopened; 0 = only identical frames "
        "(H.264 streams of a still scene repeat frames exactly); negative = off",
        le=255,
    )
    view_check_s: float = setting(
        30.0,
        "models trained on one camera's view (their manifest carries it): seconds between checks that the view has not moved since training; "
        "a move or a different view, seen by most of the last 5 checks, is logged once and counted (view_moved); 0 = every frame; negative = off",
        le=86400,
    )
    light_check_s: float = setting(
        2.0,
        "models whose manifest records the light they were trained in: seconds between checks of the frame's brightness against it; "
        "frames far darker or brighter at 10 of the last 12 checks (about 20 s) are logged once and counted (light_changed), "
        "as is the light's return; 0 = every frame; negative = off",
        le=86400,
    )
    # At least 1 s: below a camera's own frame gap every pause would read as a stall and stop the
    # watchdog, and systemd would restart a working daemon.
    stall_timeout_s: float = setting(10.0, "no frame for this long = source stalled (stops the systemd watchdog)", ge=1)
    images: ImagesSourceConfig = section(ImagesSourceConfig, "the images source")
    video: VideoSourceConfig = section(VideoSourceConfig, "the video source")
    v4l2: V4l2SourceConfig = section(V4l2SourceConfig, "the v4l2 source")
    picamera2: Picamera2SourceConfig = section(Picamera2SourceConfig, "the picamera2 source")
    synthetic: SyntheticSourceConfig = section(SyntheticSourceConfig, "the synthetic source")

    # The centre crop is the model's: its manifest's crop_fraction (how it was calibrated and measured).
    REMOVED: ClassVar[dict[str, str]] = {
        "crop_fraction": "removed: the centre crop is the model's own (its manifest's crop_fraction); delete this line (source.roi picks a region)",
    }

    def check(self, need: Need) -> None:
        problem = roi_problem(self.roi)
        need(not problem, "roi", problem)
        # A file source reads its next frame only once the last was taken: a cap slower than the
        # stall timeout would look like a stalled camera and stop the watchdog.
        need(self.max_fps == 0 or 1 / self.max_fps < self.stall_timeout_s, "max_fps", "1/max_fps must be shorter than stall_timeout_s")
        need(self.kind != "images" or bool(self.images.path), "images.path", 'required when kind = "images"')
        need(self.kind != "video" or bool(self.video.url), "video.url", 'required when kind = "video"')
