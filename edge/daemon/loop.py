"""The daemon: capture thread → latest frame → engine → results → sinks, driven by signals and systemd."""

# Signal handlers only set flags; the main loop acts on them between frames, so a frame in flight
# always completes. systemd sees READY=1 after the model loaded, passed its self-test and classified
# the first frame; WATCHDOG=1 only while frames arrive; RELOADING=1 … READY=1 around SIGHUP;
# STOPPING=1 on SIGTERM.

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from edge import __version__
from edge.config import Config, load
from edge.daemon.notify import Notifier
from edge.daemon.results import ResultFilter
from edge.daemon.sequence import Sequence
from edge.daemon.stats import Stats, format_line
from edge.errors import EdgeError, SourceError
from edge.model.engine import Engine
from edge.record import Record
from edge.sinks import Sink, make_sinks
from edge.sources import Frame, Source, make_source

log = logging.getLogger("edge.daemon")

POLL_S = 0.2  # how often the idle loop looks at signals, the watchdog and the stall timer
STATUS_EVERY_S = 10.0
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

    def stats(self) -> dict[str, Any]:
        return {"name": self.source.name, "captured": self.captured, "dropped": self.slot.dropped, **self.source.stats()}


class Pipeline:
    """Engine + result filter + opened sinks for one configuration."""

    def __init__(self, config: Config, seq: Sequence, previous: Pipeline | None = None) -> None:
        """Load and self-test the model; opens no sink (see `open_sinks`)."""
        self.config = config
        self.seq = seq
        self.device = config.device
        m = config.model
        self.engine = Engine(Path(m.path), m.threads, m.sha256.lower(), self_test=False, require_xnnpack=m.require_xnnpack)
        self.self_test_ms = self.engine.run_self_test() if m.self_test else None  # timed, for the start-up line
        keep_filter = previous is not None and previous.config.results == config.results and previous.engine.labels == self.engine.labels
        self.filter: ResultFilter = previous.filter if previous is not None and keep_filter else ResultFilter(config.results, self.engine.labels)
        self.sinks: list[Sink] = []
        self.reused: set[str] = set()

    def open_sinks(self, config_path: Path | None, previous: Pipeline | None = None) -> None:
        """Open this configuration's sinks. An unchanged sink of `previous` is kept running (an MQTT
        session survives a reload); a changed one is closed before its successor opens, because a
        spool directory and an MQTT client id cannot be held twice."""
        old = {s.name: s for s in previous.sinks} if previous else {}
        try:
            for sink in make_sinks(self.config, config_path):
                before = old.get(sink.name)
                if before is not None and previous is not None:
                    same = getattr(previous.config.sinks, sink.name) == getattr(self.config.sinks, sink.name) and previous.device == self.device
                    if same:
                        self.sinks.append(before)
                        self.reused.add(sink.name)
                        continue
                    previous.sinks.remove(before)
                    _close_sink(before)
                sink.open()
                self.sinks.append(sink)
        except BaseException:
            self.close(keep=self.reused)
            raise

    def process(self, frame: Frame, stats: Stats) -> Record | None:
        t0 = time.perf_counter()
        scores = self.engine.classify(frame.pixels)
        inference_ms = (time.perf_counter() - t0) * 1e3
        preds = self.filter.update(scores, time.monotonic())
        record = None
        if preds is not None:
            record = Record(self.seq.next(), time.time(), frame.ts, self.device, frame.origin, preds, inference_ms, self.engine.sha256)
            for sink in self.sinks:
                try:
                    sink.write(record)
                except Exception as exc:  # a sink must not raise; if one does, the others still get the record
                    log.error("sink %s: write failed: %s", sink.name, exc)
            stats.published += 1
        stats.add(inference_ms, (time.time() - frame.ts) * 1e3)
        return record

    def report(self, stats: dict[str, Any]) -> None:
        for sink in self.sinks:
            try:
                sink.report(stats)
            except Exception as exc:
                log.error("sink %s: report failed: %s", sink.name, exc)

    def flush(self) -> None:
        for sink in self.sinks:
            try:
                sink.flush()
            except Exception as exc:
                log.error("sink %s: flush failed: %s", sink.name, exc)

    def close(self, keep: set[str] | frozenset[str] = frozenset()) -> None:
        for sink in self.sinks:
            if sink.name not in keep:
                _close_sink(sink)

    def describe(self, source: Source) -> str:
        e = self.engine.describe()
        cpu_ops = ", ".join(f"{k} {v}" for k, v in sorted(e["cpu_ops"].items())) or "none"
        st = self.engine.manifest.self_test
        test = f"self-test ok ({st.label if st else '-'}, {self.self_test_ms:.1f} ms)" if self.self_test_ms is not None else "self-test off"
        sinks = ", ".join(_sink_desc(self.config, s.name) for s in self.sinks)
        return (
            f"runtime {e['runtime']} {e['runtime_version']}, delegate {e['delegate']} ({sum(e['delegated_ops'].values())} ops; outside: {cpu_ops}), "
            f"threads {e['threads']}, model {e['model']} sha256 {e['model_sha256']}, {test}, "
            f"source {source.name}, sinks {sinks}, device {self.device}"
        )


def _close_sink(sink: Sink) -> None:
    try:
        sink.close()
    except Exception as exc:
        log.error("sink %s: close failed: %s", sink.name, exc)


def _sink_desc(config: Config, name: str) -> str:
    if name == "file":
        return f"file:{config.sinks.file.path}"
    if name == "mqtt":
        return f"mqtt:{config.sinks.mqtt.host}:{config.sinks.mqtt.port}"
    return name


class Daemon:
    """Owns the pipeline and the capture; `run` returns the exit status."""

    def __init__(
        self,
        config: Config,
        config_path: Path | None = None,
        *,
        max_frames: int = 0,
        notifier: Notifier | None = None,
        log_level: str = "",
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.max_frames = max_frames
        self.log_level = log_level  # --log-level wins over the config's, across reloads too
        self.notifier = notifier or Notifier()
        self.stats = Stats()
        self._stop_requested = False
        self._reload_requested = False
        self._ready = False
        self._stalled = False
        self._next_due = 0.0  # source.max_fps: monotonic time the next frame may be taken
        self.pipeline: Pipeline | None = None
        self.capture: Capture | None = None
        self.seq: Sequence | None = None

    # Signal handlers run between bytecodes of the main thread: they only set flags.
    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        self._stop_requested = True

    def _on_hup(self, signum: int, frame: FrameType | None) -> None:
        self._reload_requested = True

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)

    def run(self) -> int:
        self.install_signal_handlers()
        self.seq = Sequence(Path(self.config.state_dir))
        try:
            self.pipeline = Pipeline(self.config, self.seq)
            self.pipeline.open_sinks(self.config_path)
            source = make_source(self.config.source)
            source.open()
            self.capture = Capture(source)
            self.capture.start()
            log.info("mnv1-edge %s started: %s", __version__, self.pipeline.describe(source))
            return self._loop()
        finally:
            self._shutdown()

    def _loop(self) -> int:
        assert self.pipeline is not None and self.capture is not None
        now = time.monotonic()
        next_stats = now + self.config.stats_interval_s if self.config.stats_interval_s > 0 else float("inf")
        next_status = now + STATUS_EVERY_S
        last_ping = 0.0
        while True:
            if self._stop_requested:
                log.info("stopping on signal")
                self.notifier.stopping()
                return 0
            if self._reload_requested:
                self._reload_requested = False
                self._reload()
                next_stats = min(next_stats, time.monotonic() + self.config.stats_interval_s) if self.config.stats_interval_s > 0 else float("inf")
            capture = self.capture
            wait = self._next_due - time.monotonic()
            if wait > 0:
                # Under the max_fps cap a live source's newer frame replaces the waiting one, and
                # a file source simply waits: the CPU is saved, the latest frame is classified.
                time.sleep(min(wait, POLL_S))
                frame = None
            else:
                frame = capture.slot.get(POLL_S)
            if frame is not None:
                if self.config.source.max_fps > 0:
                    self._next_due = time.monotonic() + 1.0 / self.config.source.max_fps
                self.pipeline.process(frame, self.stats)
                if not self._ready:
                    self._ready = True
                    self.notifier.ready(f"classifying {capture.source.name}")
            elif capture.ended:
                frame = capture.slot.get(0)  # the last frame may have landed after the check
                if frame is not None:
                    self.pipeline.process(frame, self.stats)
                    continue
                if capture.error is not None:
                    if isinstance(capture.error, EdgeError):
                        raise capture.error
                    raise SourceError(f"{capture.source.name}: capture failed ({capture.error})") from capture.error
                log.info("source %s ended; %d frames classified", capture.source.name, self.stats.frames)
                self.notifier.stopping()
                return 0
            now = time.monotonic()
            if self.max_frames and self.stats.frames >= self.max_frames:
                log.info("classified %d frames (--max-frames); stopping", self.stats.frames)
                self.notifier.stopping()
                return 0
            flowing = now - capture.last_frame < self.config.source.stall_timeout_s
            self._check_stall(flowing, now - capture.last_frame)
            if flowing and self.notifier.watchdog_interval and now - last_ping >= self.notifier.watchdog_interval:
                self.notifier.watchdog()
                last_ping = now
            if now >= next_status and self._ready and flowing:
                self.notifier.status(f"{self.stats.fps(now):.1f} fps, {capture.slot.dropped} dropped, source {capture.source.name}")
                next_status = now + STATUS_EVERY_S
            if now >= next_stats:
                self._report()
                next_stats = now + self.config.stats_interval_s

    def _check_stall(self, flowing: bool, since: float) -> None:
        assert self.capture is not None
        if not flowing and not self._stalled:
            self._stalled = True
            log.error(
                "no frame from %s for %.0f s (source.stall_timeout_s); watchdog pings stopped so systemd can restart the service",
                self.capture.source.name,
                since,
            )
            self.notifier.status(f"stalled: no frame from {self.capture.source.name} for {since:.0f} s")
        elif flowing and self._stalled:
            self._stalled = False
            log.info("frames from %s are flowing again", self.capture.source.name)

    def snapshot(self) -> dict[str, Any]:
        assert self.pipeline is not None and self.capture is not None
        cap = self.capture.stats()
        stats = self.stats.snapshot(dropped=cap["dropped"], source=cap)
        for sink in self.pipeline.sinks:
            try:
                stats[sink.name] = sink.stats()
            except Exception as exc:
                log.error("sink %s: stats failed: %s", sink.name, exc)
        return stats

    def _report(self) -> None:
        assert self.pipeline is not None
        stats = self.snapshot()
        log.info("%s", format_line(stats))
        self.pipeline.report(stats)

    def _reload(self) -> None:
        """Re-read the config and apply it between two frames, without losing a result.

        Everything that can fail without side effects comes first (parsing, loading and
        self-testing a new model): a failure there keeps the running configuration. Then the old
        camera, spool or MQTT session is released before its replacement opens, since neither can
        be held twice; if a replacement cannot open, the daemon stops with that error and systemd
        restarts it, rather than claim a configuration that no longer runs.
        """
        assert self.pipeline is not None and self.capture is not None and self.seq is not None
        self.notifier.reloading()
        log.info("reloading %s", self.config_path)
        try:
            if self.config_path is None:
                raise EdgeError("no config file to reload (started without --config)")
            config = load(self.config_path)
            pipeline = Pipeline(config, self.seq, previous=self.pipeline)
        except Exception as exc:  # nothing was touched: the running pipeline is still good
            log.error("reload failed, still running the previous configuration: %s", exc)
            self._ready_again("reload failed; running the previous configuration")
            return
        if config.state_dir != self.config.state_dir:
            log.warning("state_dir changed to %s: takes effect at the next restart", config.state_dir)
        old = self.pipeline
        old.flush()
        self.pipeline, self.config = pipeline, config
        logging.getLogger().setLevel((self.log_level or config.log_level).upper())
        try:
            if config.source != old.config.source:
                self.capture.stop()
                source = make_source(config.source)
                source.open()
                self.capture = Capture(source)
                self.capture.start()
            pipeline.open_sinks(self.config_path, previous=old)
        finally:
            old.close(keep=pipeline.reused)
        log.info("reloaded: %s", pipeline.describe(self.capture.source))
        self._ready_again(f"reloaded; classifying {self.capture.source.name}")

    def _ready_again(self, status: str) -> None:
        """READY=1 ends a reload, but only once start-up itself was complete (first frame classified)."""
        if self._ready:
            self.notifier.ready(status)
        else:
            self.notifier.status(status)

    def _shutdown(self) -> None:
        if self.capture is not None:
            self.capture.stop()
        if self.pipeline is not None:
            if self.capture is not None and self.stats.frames:
                log.info("final %s", format_line(self.snapshot()))
            self.pipeline.flush()
            self.pipeline.close()
        if self.seq is not None:
            self.seq.close()
