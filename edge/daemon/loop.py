"""The daemon loop: frames from the capture through the pipeline, driven by signals and systemd."""

# Signal handlers only set flags; the main loop acts on them between frames, so a frame in flight
# always completes. systemd sees READY=1 after the model loaded, passed its self-test and classified
# the first frame; WATCHDOG=1 only while frames arrive; RELOADING=1 … READY=1 around SIGHUP;
# STOPPING=1 on SIGTERM.

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path
from types import FrameType

from edge import __version__
from edge.config import Config, load
from edge.daemon.capture import POLL_S, Capture
from edge.daemon.notify import Notifier
from edge.daemon.pipeline import FramePipeline
from edge.daemon.preflight import preflight
from edge.daemon.sequence import RecordSequence
from edge.daemon.stats import Stats, format_line
from edge.errors import EdgeError, SourceError
from edge.sources import Source, SourceSpec, make_source
from edge.stats import StatsReport

log = logging.getLogger("edge.daemon")

STATUS_EVERY_S = 10.0
CAMERAS = ("picamera2", "v4l2")  # sources a second open cannot share with the running one


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
        self._stalls = 0  # times the source stalled (for stats, fleet and Prometheus)
        self._next_due = 0.0  # source.max_fps: monotonic time the next frame may be taken
        self._next_stats = self._next_status = self._last_ping = 0.0
        self.pipeline: FramePipeline | None = None
        self.capture: Capture | None = None
        self.seq: RecordSequence | None = None

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
        self.seq = RecordSequence(Path(self.config.state_dir))
        try:
            self.pipeline = FramePipeline(self.config, self.seq)
            self.pipeline.open_sinks(self.config_path)
            source = make_source(self.pipeline.source_spec)
            source.open()
            self.capture = Capture(source)
            self.capture.start()
            log.info("mnv1-edge %s started: %s", __version__, self.pipeline.describe(source))
            return self._loop()
        finally:
            self._shutdown()

    def _loop(self) -> int:
        """One pass per frame or per POLL_S: signals, a frame, then the timers. Returns the exit status."""
        assert self.capture is not None
        now = time.monotonic()
        self._next_stats = now + self.config.stats_interval_s if self.config.stats_interval_s > 0 else float("inf")
        self._next_status = now + STATUS_EVERY_S
        while True:
            if self._stop_requested:
                log.info("stopping on signal")
                return self._stop()
            if self._reload_requested:
                self._reload_requested = False
                self._reload()
                if self.config.stats_interval_s > 0:
                    self._next_stats = min(self._next_stats, time.monotonic() + self.config.stats_interval_s)
                else:
                    self._next_stats = float("inf")
            if not self._frame_step():
                log.info("source %s ended; %d frames classified", self.capture.source.name, self.stats.frames)
                return self._stop()
            if self.max_frames and self.stats.frames >= self.max_frames:
                log.info("classified %d frames (--max-frames); stopping", self.stats.frames)
                return self._stop()
            self._timers(time.monotonic())

    def _stop(self) -> int:
        self.notifier.stopping()
        return 0

    def _frame_step(self) -> bool:
        """Classify the next frame if one is due and there; False once a finite source has ended."""
        assert self.pipeline is not None and self.capture is not None
        capture = self.capture
        wait = self._next_due - time.monotonic()
        if wait > 0:
            # Under the max_fps cap a live source's newer frame replaces the waiting one, and
            # a file source simply waits: the CPU is saved, the latest frame is classified.
            time.sleep(min(wait, POLL_S))
            return True
        frame = capture.slot.get(POLL_S)
        if frame is None and capture.ended:
            frame = capture.slot.get(0)  # the last frame may have landed after the check
            if frame is None:
                self._raise_capture_error()
                return False
        if frame is not None:
            if self.config.source.max_fps > 0:
                self._next_due = time.monotonic() + 1.0 / self.config.source.max_fps
            self.pipeline.process(frame, self.stats, paced=not capture.source.live)
            if not self._ready:
                self._ready = True
                self.notifier.ready(f"classifying {capture.source.name}")
        return True

    def _raise_capture_error(self) -> None:
        """A capture thread that ended on an error ends the daemon with it."""
        assert self.capture is not None
        error = self.capture.error
        if error is None:
            return
        if isinstance(error, EdgeError):
            raise error
        raise SourceError(f"{self.capture.source.name}: capture failed ({error})") from error

    def _timers(self, now: float) -> None:
        """Stall detection, watchdog pings, STATUS= and the periodic stats."""
        assert self.capture is not None
        capture = self.capture
        flowing = now - capture.last_frame < self.config.source.stall_timeout_s
        self._check_stall(flowing, now - capture.last_frame)
        if flowing and self.notifier.watchdog_interval and now - self._last_ping >= self.notifier.watchdog_interval:
            self.notifier.watchdog()
            self._last_ping = now
        if now >= self._next_status and self._ready and flowing:
            self.notifier.status(f"{self.stats.fps(now):.1f} fps, {capture.slot.dropped} dropped, source {capture.source.name}")
            self._next_status = now + STATUS_EVERY_S
        if now >= self._next_stats:
            self._report()
            self._next_stats = now + self.config.stats_interval_s

    def _check_stall(self, flowing: bool, since: float) -> None:
        assert self.capture is not None
        if not flowing and not self._stalled:
            self._stalled = True
            self._stalls += 1
            log.error(
                "no frame from %s for %.0f s (source.stall_timeout_s); watchdog pings stopped so systemd can restart the service",
                self.capture.source.name,
                since,
            )
            self.notifier.status(f"stalled: no frame from {self.capture.source.name} for {since:.0f} s")
        elif flowing and self._stalled:
            self._stalled = False
            log.info("frames from %s are flowing again", self.capture.source.name)

    def snapshot(self) -> StatsReport:
        assert self.pipeline is not None and self.capture is not None
        return StatsReport(
            self.stats.snapshot(),
            self.capture.stats(),
            self.pipeline.sinks.stats(),
            self.pipeline.snapshot_counters(),
            # The daemon's own verdicts, so `mnv1-edge fleet` can tell a stall and the staleness window.
            stalled=self._stalled,
            stalls=self._stalls,
            stats_interval_s=self.config.stats_interval_s,
            heartbeat_s=self.config.results.heartbeat_s,
            kernels=self.pipeline.kernels(),
        )

    def _report(self) -> None:
        assert self.pipeline is not None
        stats = self.snapshot()
        log.info("%s", format_line(stats))
        self.pipeline.report(stats)

    def _reload(self) -> None:
        """Re-read the config and apply it between two frames, without losing a result.

        Everything that can fail without side effects comes first (parsing, check-config's checks,
        loading and self-testing a new model, opening a new file or stream source beside the old
        one): a failure there keeps the running configuration. Then the old camera, spool or MQTT
        session is released before its replacement opens, since neither can be held twice; a
        camera that then cannot open gives way to the previous one again. Only if that fails too
        does the daemon stop with the error (systemd restarts it).
        """
        assert self.pipeline is not None and self.capture is not None and self.seq is not None
        self.notifier.reloading()
        log.info("reloading %s", self.config_path)
        source: Source | None = None
        try:
            if self.config_path is None:
                raise EdgeError("no config file to reload (started without --config)")
            config = load(self.config_path)
            # What check-config would refuse (a missing password or TLS file, a folder that cannot
            # be created) would otherwise surface only after the running sinks were released.
            problems = preflight(config).problems
            if problems:
                raise EdgeError("; ".join(problems))
            pipeline = FramePipeline(config, self.seq, previous=self.pipeline)
            if pipeline.source_spec != self.pipeline.source_spec:
                source = make_source(pipeline.source_spec)
                if config.source.kind not in CAMERAS:  # a file, a folder or a stream opens beside the running one
                    source.open()
        except Exception as exc:  # nothing was touched: the running pipeline is still good
            log.error("reload failed, still running the previous configuration: %s", exc)
            self._ready_again("reload failed; running the previous configuration")
            return
        if config.state_dir != self.config.state_dir:
            log.warning("state_dir changed to %s: takes effect at the next restart", config.state_dir)
        old = self.pipeline
        old.flush()
        if source is not None and not self._swap_source(source, pipeline.source_spec):
            self._ready_again("reload failed; running the previous configuration")
            return
        self.pipeline, self.config = pipeline, config
        logging.getLogger().setLevel((self.log_level or config.log_level).upper())
        try:
            pipeline.open_sinks(self.config_path, previous=old)
        finally:
            old.close()  # what the new pipeline did not take over
        log.info("reloaded: %s", pipeline.describe(self.capture.source))
        self._ready_again(f"reloaded; classifying {self.capture.source.name}")

    def _swap_source(self, source: Source, spec: SourceSpec) -> bool:
        """Stop the running capture and start `source` (a camera is opened only now: it cannot be held
        twice). A camera that will not open gives way to the previous source again: False, and the
        previous configuration runs on; if that cannot open either, the error ends the daemon."""
        assert self.capture is not None and self.pipeline is not None
        self.capture.stop()
        if spec.config.kind in CAMERAS:
            try:
                source.open()
            except Exception as exc:
                log.error("reload failed, still running the previous configuration: %s", exc)
                source = make_source(self.pipeline.source_spec)
                source.open()
                self.capture = Capture(source)
                self.capture.start()
                return False
        self.capture = Capture(source)
        self.capture.start()
        return True

    def _ready_again(self, status: str) -> None:
        """READY=1 ends a reload, but only once start-up itself was complete (first frame classified)."""
        if self._ready:
            self.notifier.ready(status)
        else:
            self.notifier.status(status)

    def _report_losses(self) -> None:
        """The exit summary's warning: records a sink lost in this run, counted after it closed
        (a spool dropping its backlog at close counts too)."""
        assert self.pipeline is not None
        for name, sink in self.pipeline.sinks.stats().items():
            if sink.lost:
                published = self.stats.published
                log.warning("sink %s: %d of %d published records lost in this run (see its records_lost in stats)", name, sink.lost, published)

    def _shutdown(self) -> None:
        if self.capture is not None:
            self.capture.stop()
        if self.pipeline is not None:
            if self.capture is not None and self.stats.frames:
                log.info("final %s", format_line(self.snapshot()))
            self.pipeline.flush()
            self.pipeline.close()
            self._report_losses()
        if self.seq is not None:
            self.seq.close()
