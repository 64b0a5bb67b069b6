"""What every bench stage shares: timing a step, a daemon config for a work folder, the daemon's own pipeline, the allocation check."""

from __future__ import annotations

import statistics
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.config import Config
from edge.errors import EdgeError

FRAME_BYTES = 128 * 128 * 3


@dataclass(frozen=True)
class Timing:
    """Medians over `batches` batches of `frames` frames."""

    wall_ms: float
    cpu_ms: float
    frames: int
    batches: int


def measure(step: Callable[[], object], frames: int, batches: int) -> Timing:
    walls, cpus = [], []
    for _ in range(batches):
        w0, c0 = time.perf_counter(), time.process_time()
        for _ in range(frames):
            step()
        walls.append((time.perf_counter() - w0) * 1e3 / frames)
        cpus.append((time.process_time() - c0) * 1e3 / frames)
    return Timing(round(statistics.median(walls), 4), round(statistics.median(cpus), 4), frames, batches)


def bench_config(model: Path, workdir: Path, source: dict[str, Any], stdout: bool = False) -> dict[str, Any]:
    return {
        "state_dir": str(workdir / "state"),
        "stats_interval_s": 0.0,
        "model": {"path": str(model)},
        "source": source,
        "sinks": {"stdout": {"enabled": stdout}, "file": {"enabled": not stdout, "path": str(workdir / "results.jsonl")}},
    }


class PipelineRunner:
    """The daemon's own FramePipeline and Capture (capture thread, slot, engine, results, sinks)."""

    def __init__(self, config: Config) -> None:
        from edge.daemon.capture import Capture
        from edge.daemon.pipeline import FramePipeline
        from edge.daemon.sequence import RecordSequence
        from edge.daemon.stats import Stats
        from edge.sources import make_source

        self.seq = RecordSequence(Path(config.state_dir))
        self.pipeline = FramePipeline(config, self.seq)
        source = make_source(self.pipeline.source_spec)
        source.open()
        self.capture = Capture(source)
        self.capture.start()
        self.stats = Stats()

    def step(self) -> None:
        frame = self.capture.slot.get(5.0)
        if frame is None:
            raise EdgeError("bench: the synthetic source produced no frame")
        self.pipeline.process(frame, self.stats)

    def close(self) -> None:
        self.capture.stop()
        self.pipeline.close()
        self.seq.close()


def allocation_check(runner: PipelineRunner, frames: int) -> tuple[int, int]:
    """(largest transient allocation peak in one frame, growth of retained memory) in bytes,
    as tracemalloc sees them (NumPy buffers and Python objects) in steady state."""
    for _ in range(50):
        runner.step()
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        worst = 0
        for _ in range(frames):
            tracemalloc.reset_peak()
            before, _ = tracemalloc.get_traced_memory()
            runner.step()
            _, peak = tracemalloc.get_traced_memory()
            worst = max(worst, peak - before)
        end, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return worst, end - start
