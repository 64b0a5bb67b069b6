"""The capture side: one source read in its own thread into a one-frame mailbox."""

from __future__ import annotations

import logging
import threading
import time

from edge.errors import EdgeError
from edge.sources import Frame, Source
from edge.stats import SourceReport

log = logging.getLogger("edge.daemon")

POLL_S = 0.2  # how long a waiting put or get sleeps before it looks at the stop flag again
CAPTURE_JOIN_S = 1.5  # part of the 5 s stop budget


class FrameSlot:
    """A one-frame mailbox: a live source overwrites an unread frame (counted as dropped); a
    file source waits until the previous frame was taken, so no file is skipped."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self.dropped = 0

    def put(self, frame: Frame, wait: bool, stop: threading.Event) -> None:
        with self._cond:
            while wait and self._frame is not None and not stop.is_set():
                self._cond.wait(POLL_S)
            if self._frame is not None:
                self.dropped += 1
            self._frame = frame
            self._cond.notify_all()

    def get(self, timeout: float) -> Frame | None:
        with self._cond:
            if self._frame is None:
                self._cond.wait(timeout)
            frame, self._frame = self._frame, None
            if frame is not None:
                self._cond.notify_all()
            return frame

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()


class Capture:
    """Runs one opened source in its own thread and feeds the slot."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.slot = FrameSlot()
        self.captured = 0
        self.last_frame = time.monotonic()  # stall timer starts at open
        self.ended = False
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)

    def start(self) -> None:
        self.last_frame = time.monotonic()
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                frame = self.source.read()
                if frame is None:
                    break
                self.captured += 1
                self.last_frame = time.monotonic()
                self.slot.put(frame, not self.source.live, self._stop)
        except BaseException as exc:
            self.error = exc
            if not isinstance(exc, EdgeError):
                log.exception("capture thread failed")
        finally:
            self.ended = True
            self.slot.wake()
            try:
                self.source.close()  # closed by the thread that used it (PyAV, picamera2)
            except Exception as exc:
                log.warning("%s: close failed (%s)", self.source.name, exc)

    def stop(self) -> None:
        self._stop.set()
        self.source.interrupt()
        self.slot.wake()
        if self._thread.is_alive():
            self._thread.join(CAPTURE_JOIN_S)
        if self._thread.is_alive():
            log.warning("%s: capture did not stop within %.1f s; leaving it", self.source.name, CAPTURE_JOIN_S)

    def stats(self) -> SourceReport:
        return SourceReport(self.source.name, self.captured, self.slot.dropped, self.source.stats())
