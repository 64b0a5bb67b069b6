"""V4L2 source (USB webcams) through PyAV's `v4l2` input format; see video.py for why PyAV."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.errors import SourceError
from edge.model.preprocess import INPUT_SIZE, STOCK_CROP
from edge.model.region import Crop
from edge.sources.v4l2_caps import Mode, choose_mode, device_fd, list_sizes, wait_readable
from edge.sources.video import AvSource

if TYPE_CHECKING:
    from edge.config import V4l2SourceConfig

log = logging.getLogger("edge.sources.v4l2")

# Without a format FFmpeg takes the camera's default (often 640x480 raw YUYV at its full rate) and
# every frame is converted, even those the daemon drops. Instead: the smallest native size whose
# centre crop covers the model's input, raw YUYV when there is one (no decoding), else MJPEG decoded
# at reduced scale (lowres), and the capture rate capped at what is classified (source.max_fps).


class V4l2Source(AvSource):
    """A webcam is live (latest frame wins); unplugging it reconnects with back-off, and one that stops
    delivering without disconnecting (FFmpeg's read would block forever) is reopened too."""

    def __init__(self, config: V4l2SourceConfig, crop: Crop = STOCK_CROP, stall_timeout_s: float = 10.0, max_fps: float = 0.0) -> None:
        self.config = config
        self.framerate = min(config.framerate, max_fps) if max_fps > 0 else config.framerate
        super().__init__(
            config.device,
            crop,
            live=True,
            fmt="v4l2",
            options={},
            name=f"v4l2:{config.device}",
            stall_timeout_s=stall_timeout_s,
        )
        self.mode: Mode | None = None
        self._fd: int | None = None

    def _check_exists(self) -> None:
        if not Path(self.url).exists():
            raise SourceError(f"source.v4l2.device: {self.url} does not exist (is the webcam plugged in? `ls /dev/video*`)")

    def _choose(self) -> Mode | None:
        c = self.config
        if c.width and c.height:
            return Mode(c.input_format if c.input_format != "auto" else "", c.width, c.height, c.lowres)
        try:
            sizes = list_sizes(self.url)
        except OSError as exc:
            log.warning("%s: cannot list its formats (%s); letting FFmpeg choose", self.name, exc)
            return None
        mode = choose_mode(sizes, self.crop.need(INPUT_SIZE), c.input_format)
        if mode is None:
            log.warning("%s: no YUYV or MJPEG size covers %dx%d after the crop (%s); letting FFmpeg choose", self.name, INPUT_SIZE, INPUT_SIZE, sizes)
        return mode

    def _connect(self) -> None:
        self.mode = self._choose()
        self.options = self.options_for(self.mode, self.framerate)
        super()._connect()

    @staticmethod
    def options_for(mode: Mode | None, framerate: float) -> dict[str, str]:
        options = {"framerate": f"{framerate:g}"}
        if mode is not None:
            options["video_size"] = f"{mode.width}x{mode.height}"
            if mode.input_format:
                options["input_format"] = mode.input_format
        return options

    def _configure_decoder(self, stream: Any) -> None:
        if self.mode is not None and self.mode.lowres:
            stream.codec_context.options = {"lowres": str(self.mode.lowres)}

    def _connected(self) -> None:
        self._fd = device_fd(self.url)
        log.info("%s: capturing %s at %s fps", self.name, self.mode or "FFmpeg's default mode", self.options["framerate"])

    def _ready(self) -> bool:
        return self._fd is None or wait_readable(self._fd, self.read_timeout_s)

    def _disconnect(self) -> None:
        self._fd = None
        super()._disconnect()
