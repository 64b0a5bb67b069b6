"""V4L2 source (USB webcams) through PyAV's `v4l2` input format; see video.py for why PyAV."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edge.errors import SourceError
from edge.sources.video import AvSource

if TYPE_CHECKING:
    from edge.config import V4l2SourceConfig


class V4l2Source(AvSource):
    """A webcam is live (latest frame wins); unplugging it reconnects with back-off."""

    def __init__(self, config: V4l2SourceConfig, crop_fraction: float = 0.875, stall_timeout_s: float = 10.0) -> None:
        options = {"video_size": f"{config.width}x{config.height}", "framerate": f"{config.framerate:g}"}
        super().__init__(config.device, crop_fraction, live=True, fmt="v4l2", options=options, name=f"v4l2:{config.device}")

    def _check_exists(self) -> None:
        if not Path(self.url).exists():
            raise SourceError(f"source.v4l2.device: {self.url} does not exist (is the webcam plugged in? `ls /dev/video*`)")
