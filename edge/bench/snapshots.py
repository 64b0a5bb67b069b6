"""Benchmark stages for evidence snapshots: the per-frame cost with them on, and the cost of one snapshot."""

# Per frame: the 720p JPEG pipeline with snapshots on but no change of the answer (one photo, looped)
# is compared with the same pipeline with them off (`pipeline_jpeg720_draft`): the difference is what
# every frame pays. Per snapshot: what the pipeline thread pays on a change (claim + queue + a copy of
# the 128x128 input) and what the writer thread pays (the still decoded from the JPEG at max_side,
# two JPEG encodes, three fsync'ed atomic writes), with the bytes it leaves on disk.

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from edge.bench.runner import PipelineRunner, Timing, bench_config, measure
from edge.config import ImagesSourceConfig, SnapshotsConfig, parse
from edge.daemon.snapshots import SnapshotWriter
from edge.record import Record

SNAPSHOTS = 30  # snapshots timed one by one


def per_frame(model: Path, work: Path, jpeg: Path, frames: int, batches: int) -> Timing:
    """The 720p JPEG pipeline (draft decode) with snapshots on and the answer never changing."""
    data = bench_config(model, work, {"kind": "images", "images": {"path": str(jpeg), "loop": True}})
    data["snapshots"] = {"enabled": True, "path": str(work / "snapshots")}
    runner = PipelineRunner(parse(data))
    try:
        for _ in range(20):  # the first frame is a change (the first answer): its snapshot is taken here
            runner.step()
        assert runner.pipeline.snapshots is not None
        runner.pipeline.snapshots.flush()
        return measure(runner.step, frames, batches)
    finally:
        runner.close()


def one_snapshot(work: Path, jpeg: Path, max_side: int = 640) -> dict[str, Any]:
    """Median ms per snapshot in the pipeline thread and in the writer, and its bytes and files."""
    from edge.sources.images import ImagesSource

    config: SnapshotsConfig = parse({"enabled": True, "path": str(work / "one"), "max_side": max_side}, SnapshotsConfig)
    source = ImagesSource(parse({"path": str(jpeg)}, ImagesSourceConfig))
    source.open()
    frame = source.read()
    assert frame is not None
    writer = SnapshotWriter(config)
    writer.open()
    pipeline_ms, writer_ms = [], []
    try:
        for seq in range(SNAPSHOTS):
            t0 = time.perf_counter()
            name = writer.claim(True, seq, time.time(), float(seq), wait=True)
            writer.take(Record(seq, time.time(), frame.ts, "bench", frame.origin, (), 0.0, "", "x", (), name), frame)
            t1 = time.perf_counter()
            writer.flush(60.0)
            t2 = time.perf_counter()
            pipeline_ms.append((t1 - t0) * 1e3)
            writer_ms.append((t2 - t1) * 1e3)
        stats = writer.stats()
    finally:
        writer.close()
        source.close()
    return {
        "source": f"{jpeg.name}, still max_side {max_side}",
        "pipeline_thread_ms": round(statistics.median(pipeline_ms), 3),
        "writer_ms": round(statistics.median(writer_ms), 2),
        "bytes": stats.bytes // stats.saved,
        "files": stats.files // stats.saved,
    }
