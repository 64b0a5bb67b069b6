"""`mnv1-edge bench` runs end to end and reports every stage side by side (figures are not judged here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_bench_reports_every_stage_and_the_process_figures(converted_model: Path) -> None:
    exe = str(Path(sys.executable).with_name("mnv1-edge"))
    proc = subprocess.run(
        [exe, "bench", "--model", str(converted_model), "--frames", "20", "--batches", "1", "--json"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    for stage in (
        "bare_invoke",
        "engine_classify_top5",
        "group_sums_bird_dog",
        "camera_yuv420_swscale",
        "pipeline_memory_to_file",
        "pipeline_jpeg720_draft",
    ):
        assert report["timings"][stage]["cpu_ms"] > 0, stage
    # the daemon processes' own peak RSS: far below the bench's own, which once leaked into it
    assert 20 < report["rss_mb"] < 200 and report["cold_start_s"] > 0
    assert set(report["targets"]) >= {"pipeline_over_invoke_cpu", "rss_mb", "cold_start_s"}
