"""One configuration's classification path: engine → result filter → records → sink fan-out."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from edge.config import Config
from edge.daemon.fanout import SinkFanout
from edge.daemon.results import ResultFilter
from edge.daemon.sequence import RecordSequence
from edge.daemon.snapshots import SnapshotWriter
from edge.daemon.stats import Stats
from edge.model.engine import Engine
from edge.model.groups import NUM_CLASSES, GroupScorer, configured, unused
from edge.record import Record
from edge.sinks import sink_specs
from edge.sources import Frame, Source, SourceSpec
from edge.stats import Kernels, SnapshotCounters, StatsReport

log = logging.getLogger("edge.daemon")


class FramePipeline:
    """Engine + result filter + opened sinks for one configuration."""

    def __init__(self, config: Config, seq: RecordSequence, previous: FramePipeline | None = None) -> None:
        """Load and self-test the model; opens no sink (see `open_sinks`)."""
        self.config = config
        self.seq = seq
        self.device = config.device
        m = config.model
        self.engine = Engine(Path(m.path), m.threads, m.sha256.lower(), self_test=False, require_xnnpack=m.require_xnnpack)
        self.self_test_ms = self.engine.run_self_test() if m.self_test else None  # timed, for the start-up line
        labels = self.engine.labels
        groups = configured(config.groups, config.results.groups, len(labels)) if config.results.groups else ()
        for name in unused(config.groups, config.results.groups):
            log.warning("groups.%s: defined, but results.groups does not name it (nor a group it names): unused", name)
        # The answers a consumer can expect (one Home Assistant binary_sensor each): the configured
        # groups, or a custom model's own classes; not ImageNet's 1001 labels.
        self.answers: tuple[str, ...] = tuple(g.name for g in groups) if groups else (labels if len(labels) < NUM_CLASSES else ())
        # A fixed-camera model's view is watched (edge/sources/moved.py): Home Assistant gets a "view moved" sensor.
        self.view_check = self.engine.manifest.view_references_png_base64 is not None and config.source.view_check_s >= 0
        # A model that records its training light is watched for frames out of it (edge/sources/light.py): a "light" sensor too.
        trained_light = self.engine.manifest.trained_light()
        self.light_check = trained_light is not None and config.source.light_check_s >= 0
        same_results = previous is not None and (previous.config.results, previous.config.groups, previous.engine.labels) == (
            config.results,
            config.groups,
            labels,
        )
        if previous is not None and same_results:
            self.filter: ResultFilter = previous.filter
        else:
            self.filter = ResultFilter(config.results, labels, GroupScorer(groups, len(labels)) if groups else None)
        self.sinks = SinkFanout()
        self.snapshots = SnapshotWriter(config.snapshots, self.sinks.publish_snapshot) if config.snapshots.enabled else None
        # The source this configuration reads (a reload makes a new one only when it differs).
        views = self.engine.manifest.view_references_png_base64
        self.source_spec = SourceSpec(config.source, self.engine.manifest.crop_fraction, config.snapshots.enabled, views, trained_light)

    def open_sinks(self, config_path: Path | None, previous: FramePipeline | None = None) -> None:
        """Open the snapshot writer and this configuration's sinks; the fan-out takes over those of
        `previous` that are unchanged (edge/daemon/fanout.py)."""
        specs = sink_specs(self.config, config_path, self.answers, self.view_check, self.seq.advance_past, self.light_check)
        try:
            if self.snapshots is not None:
                self.snapshots.open()
            self.sinks.open(specs, previous.sinks if previous is not None else None)
        except BaseException:
            if self.snapshots is not None:
                self.snapshots.close()
            raise

    def process(self, frame: Frame, stats: Stats, paced: bool = False) -> Record | None:
        """`paced`: the source waits for the pipeline (files), so a due snapshot waits for the
        snapshot writer rather than being skipped."""
        t0 = time.perf_counter()
        scores = self.engine.classify(frame.pixels)
        inference_ms = (time.perf_counter() - t0) * 1e3
        result = self.filter.update(scores, time.monotonic())
        record = None
        if result is not None:
            seq, now = self.seq.next(), time.time()
            snapshot = self.snapshots.claim(result.changed, seq, now, time.monotonic(), paced) if self.snapshots is not None else None
            record = Record(
                seq,
                now,
                frame.ts,
                self.device,
                frame.origin,
                result.top_k,
                inference_ms,
                self.engine.sha256,
                result.answer,
                result.groups,
                snapshot,
            )
            self.sinks.write(record)
            if snapshot is not None and self.snapshots is not None:
                self.snapshots.take(record, frame)
            stats.published += 1
        stats.add(inference_ms, (time.time() - frame.ts) * 1e3)
        return record

    def snapshot_counters(self) -> SnapshotCounters | None:
        return self.snapshots.stats() if self.snapshots is not None else None

    def kernels(self) -> Kernels:
        """The kernels classifying the frames (fallback: at load XNNPACK disagreed with the reference
        kernels' outputs the manifest records, and TFLite's built-in kernels run instead)."""
        return Kernels(self.engine.kernels, self.engine.kernel_fallback)

    def report(self, stats: StatsReport) -> None:
        self.sinks.report(stats)

    def flush(self) -> None:
        if self.snapshots is not None:
            self.snapshots.flush()
        self.sinks.flush()

    def close(self) -> None:
        """Close the snapshot writer and every sink still in the fan-out (those a reload took over are not)."""
        if self.snapshots is not None:
            self.snapshots.close()
        self.sinks.close()

    def describe(self, source: Source) -> str:
        """The start-up line: runtime, delegate, model and self-test, source and sinks."""
        e = self.engine.describe()
        cpu_ops = ", ".join(f"{k} {v}" for k, v in sorted(e["cpu_ops"].items())) or "none"
        st = self.engine.manifest.self_test
        test = f"self-test ok ({st.label if st else '-'}, {self.self_test_ms:.1f} ms)" if self.self_test_ms is not None else "self-test off"
        sinks = ", ".join(_sink_desc(self.config, s.name) for s in self.sinks.sinks)
        return (
            f"runtime {e['runtime']} {e['runtime_version']}, delegate {e['delegate']} ({sum(e['delegated_ops'].values())} ops; outside: {cpu_ops}), "
            f"{e['kernel_check']}, "
            f"threads {e['threads']}, model {e['model']} sha256 {e['model_sha256']}, {test}, "
            f"source {source.name}, sinks {sinks}, device {self.device}"
            + (f", snapshots {self.config.snapshots.path}" if self.snapshots is not None else "")
        )


def _sink_desc(config: Config, name: str) -> str:
    if name == "file":
        return f"file:{config.sinks.file.path}"
    if name == "mqtt":
        return f"mqtt:{config.sinks.mqtt.host}:{config.sinks.mqtt.port}"
    return name
