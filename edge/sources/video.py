"""Video source via PyAV (FFmpeg): files, rtsp:// and http:// streams, with reconnect and back-off."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from edge.backoff import Backoff
from edge.errors import SourceError
from edge.log import PACED
from edge.model.preprocess import INPUT_SIZE, STOCK_CROP, prepare
from edge.model.region import Crop
from edge.sources.frame import Frame
from edge.sources.still import av_still
from edge.stats import SourceCounters

if TYPE_CHECKING:
    from edge.config import VideoSourceConfig

# PyAV rather than OpenCV: one dependency covers files, network streams and V4L2 webcams (its wheels
# bundle FFmpeg with the v4l2 demuxer, for aarch64 too), it has read timeouts for dead streams, hands
# us frame timestamps, and does not pin NumPy's ABI or pull in GUI libraries the way opencv-python does.

log = logging.getLogger("edge.sources.video")

STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")
OPEN_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 5.0


def import_av() -> Any:
    try:
        import av
    except ImportError as exc:
        raise SourceError("PyAV is not installed: pip install 'mnv1-edge[video]' (or pip install av)") from exc
    return av


class AvSource:
    """Decodes frames with PyAV; read errors and stream ends (for streams) reconnect with back-off."""

    def __init__(
        self,
        url: str,
        crop: Crop,
        *,
        live: bool,
        loop: bool = False,
        fmt: str | None = None,
        options: dict[str, str] | None = None,
        reconnect_max_s: float = 30.0,
        name: str = "",
        stall_timeout_s: float = 10.0,
    ) -> None:
        self.url = url
        self.crop = crop
        self.live = live
        self.loop = loop
        self.fmt = fmt
        self.options = options or {}
        self.name = name or url
        self.backoff = Backoff(reconnect_max_s, first_s=min(1.0, stall_timeout_s / 4))
        # A dead stream must be noticed and reconnected before the daemon's stall timer gives up on it.
        self.read_timeout_s = min(READ_TIMEOUT_S, stall_timeout_s / 2)
        self._container: Any = None
        self._frames: Iterator[Any] | None = None
        self._read = 0
        self._pass_frames = 0  # frames decoded since the last (re)connect
        self._reconnects = 0
        self._errors = 0
        self._damaged = 0  # packets the decoder rejected and that were skipped

    def _connect(self) -> None:
        av = import_av()
        self._container = av.open(self.url, format=self.fmt, options=self.options, timeout=(OPEN_TIMEOUT_S, self.read_timeout_s))
        stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"  # frame threads: decoding overlaps inference on multi-core Pis
        self._configure_decoder(stream)
        self._frames = self._decoded(self._container, stream, av.error.FFmpegError)
        self._pass_frames = 0
        self._connected()

    def _decoded(self, container: Any, stream: Any, damaged: type[Exception]) -> Iterator[Any]:
        """The stream's frames, packet by packet: a packet the decoder rejects (corrupt data in a
        file, a broken MJPEG frame from a webcam) is skipped, counted and said, and decoding goes on
        with the next; container.decode() would end at the first (its generator dies with the error).
        Errors reading the container itself still end the pass (a dropped stream, a cut file)."""
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except damaged as exc:
                self._damaged += 1
                if self._damaged & (self._damaged - 1) == 0:  # the 1st, 2nd, 4th, 8th …: once per back-off step
                    reason = getattr(exc, "strerror", None) or exc
                    log.warning("%s: skipped a damaged packet (%s); %d skipped so far", self.name, reason, self._damaged, extra=PACED)
                continue
            yield from frames

    def _configure_decoder(self, stream: Any) -> None:
        """Subclasses set decoder options (before the first packet opens the decoder)."""

    def _connected(self) -> None:
        """Subclasses look at the open container."""

    def _ready(self) -> bool:
        """False when no frame came within the read timeout by a path FFmpeg's own timeout misses."""
        return True

    def _disconnect(self) -> None:
        self._frames = None
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # closing a broken stream may fail again; it is going away anyway
                pass
            self._container = None

    def open(self) -> None:
        self._check_exists()
        try:
            self._connect()
        except Exception as exc:
            if not self.live:
                # FFmpeg's errors carry a readable strerror; their str() adds an errno like 1094995529.
                reason = getattr(exc, "strerror", None) or exc
                raise SourceError(f"{self.name}: cannot open ({reason}); is it a video file PyAV/FFmpeg can read?") from exc
            # A camera or stream that is down at boot comes back later: read() keeps retrying.
            log.warning("%s: cannot open (%s); retrying with back-off", self.name, exc)
            self._disconnect()

    def _check_exists(self) -> None:
        """Files must exist; streams are checked by connecting."""

    def read(self) -> Frame | None:
        while not self.backoff.stop.is_set():
            if self._frames is None:
                if not self._reconnect():
                    return None
                continue
            try:
                if not self._ready():
                    raise TimeoutError(f"no frame for {self.read_timeout_s:g} s")
                frame = next(self._frames)
            except StopIteration:
                self._disconnect()
                if self.live:
                    log.warning("%s: stream ended; reconnecting", self.name)
                    continue
                if not self._pass_frames:
                    raise SourceError(
                        f"{self.name}: no frame could be decoded ({self._damaged} damaged packets skipped); the file is damaged"
                    ) from None
                if not self.loop:
                    return None
                self._try_connect()  # a looping file starts again; on failure, read() retries with back-off
                continue
            except Exception as exc:  # FFmpeg errors: network drop, timeout, corrupt packet storm
                self._errors += 1
                self._disconnect()
                if not self.live:
                    # Reopening a file would start it again at frame 0 and hit the same damage: the
                    # frames would repeat forever.
                    raise SourceError(f"{self.name}: decode failed after {self._pass_frames} frames ({exc}); the file is damaged") from exc
                log.warning("%s: read failed (%s); reconnecting", self.name, exc)
                continue
            self.backoff.reset()
            self._read += 1
            self._pass_frames += 1
            return Frame(prepare_av_frame(frame, self.crop), time.time(), self.name, still=partial(av_still, frame))
        return None

    def _reconnect(self) -> bool:
        if not self.backoff.wait():
            return False
        self._reconnects += 1
        if self._try_connect():
            log.info("%s: reconnected", self.name)
        return True

    def _try_connect(self) -> bool:
        try:
            self._connect()
        except Exception as exc:
            log.warning("%s: reconnect failed (%s)", self.name, exc, extra=PACED)
            self._disconnect()
            return False
        return True

    def stats(self) -> SourceCounters:
        return SourceCounters(self._read, reconnects=self._reconnects, errors=self._errors, damaged=self._damaged)

    def interrupt(self) -> None:
        self.backoff.stop.set()

    def close(self) -> None:
        self._disconnect()


def prepare_av_frame(frame: Any, crop: Crop) -> np.ndarray:
    """A decoded PyAV VideoFrame as the model's input. swscale shrinks a large frame first (like JPEG
    draft mode) as far as the crop keeps twice the model's input, then Pillow does the same crop +
    bilinear resize as for every other source."""
    need_w, need_h = crop.need(INPUT_SIZE)
    scale = max(2 * need_w / frame.width, 2 * need_h / frame.height)
    if scale < 1.0:
        w = max(2, round(frame.width * scale) // 2 * 2)
        h = max(2, round(frame.height * scale) // 2 * 2)
        image = frame.reformat(width=w, height=h, format="rgb24", interpolation="AREA").to_image()
    else:
        image = frame.to_image()
    return np.asarray(prepare(image, crop))


def is_stream(url: str) -> bool:
    return url.lower().startswith(STREAM_SCHEMES)


class VideoSource(AvSource):
    """A video file (read at inference pace, optionally looping) or a network stream (live)."""

    def __init__(self, config: VideoSourceConfig, crop: Crop = STOCK_CROP, stall_timeout_s: float = 10.0) -> None:
        stream = is_stream(config.url)
        options = {"rtsp_transport": "tcp", "fflags": "nobuffer", "flags": "low_delay"} if config.url.lower().startswith("rtsp") else {}
        super().__init__(
            config.url,
            crop,
            live=stream,
            loop=config.loop,
            options=options,
            reconnect_max_s=config.reconnect_max_s,
            name=f"video:{config.url}",
            stall_timeout_s=stall_timeout_s,
        )

    def _check_exists(self) -> None:
        from pathlib import Path

        if not self.live and not Path(self.url).is_file():
            raise SourceError(f"source.video.url: {self.url} is not a file (and not an rtsp/http stream URL)")
