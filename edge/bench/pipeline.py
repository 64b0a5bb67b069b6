"""Benchmarks, side by side in one run: bare invoke, engine, whole pipeline (in-memory frames and a"""

# 720p JPEG, draft vs full decode), cold start, peak RSS, and a per-frame allocation check.
#
# CPU time per frame (process_time: every thread of this process) is reported next to wall time;
# the targets are about CPU time on one core, so `run` pins the process (and its children) to one.

from __future__ import annotations

import dataclasses
import os
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.bench.runner import FRAME_BYTES, PipelineRunner, Timing, allocation_check, bench_config, measure
from edge.config import parse, to_toml
from edge.paths import sample_images

TARGETS = {"pipeline_over_invoke_cpu": 1.3, "jpeg720_draft_ms": 2.5, "cold_start_s": 1.5, "rss_mb": 80.0}

# Extra benchmarks registered by callers (`mnv1-edge bench --mqtt` adds "mqtt_publish"): name → fn()
# returning a dict of figures, run after the built-in ones so they share one report.
EXTRA: dict[str, Callable[[], dict[str, Any]]] = {}


def register(name: str, fn: Callable[[], dict[str, Any]]) -> None:
    EXTRA[name] = fn


@dataclass
class BenchReport:
    cores: str
    model: str
    timings: dict[str, Timing] = field(default_factory=dict)
    cold_start_s: float = 0.0
    cold_start_exit_s: float = 0.0
    rss_mb: float = 0.0
    max_transient_alloc_bytes: int = 0
    retained_growth_bytes: int = 0
    ratios: dict[str, float] = field(default_factory=dict)
    targets: dict[str, dict[str, Any]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def pin_one_core() -> str:
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpus[-1]})
    return f"1 (cpu {cpus[-1]} of {len(cpus)})"


def run(model: Path, frames: int = 300, batches: int = 5, one_core: bool = True, progress: Callable[[str], None] = lambda s: None) -> BenchReport:
    from edge.sources.synthetic import SyntheticSource

    cores = pin_one_core() if one_core else str(len(os.sched_getaffinity(0)))
    report = BenchReport(cores=cores, model=str(model))
    jpeg = sample_images() / "cat_720p.jpg"
    with tempfile.TemporaryDirectory(prefix="mnv1-bench-") as tmp:
        work = Path(tmp)
        frame_source = SyntheticSource(parse(bench_config(model, work, {"kind": "synthetic"})).source.synthetic)
        frame_source.open()
        frame = frame_source._pool[0]
        _model_stages(report, model, frame, frames, batches, progress)
        from edge.bench.camera import camera_steps

        for name, step in camera_steps(frame, jpeg).items():  # the camera paths' preprocessing, per frame
            progress(name)
            report.timings[name] = measure(step, frames, batches)
        _pipeline_stages(report, model, work, jpeg, frames, batches, progress)
        _process_stages(report, model, work, jpeg, progress)
    for name, fn in EXTRA.items():
        progress(name)
        report.extra[name] = fn()
    _judge(report)
    return report


def _model_stages(report: BenchReport, model: Path, frame: Any, frames: int, batches: int, progress: Callable[[str], None]) -> None:
    """Bare invoke, the engine, and the results step with and without groups."""
    from edge.config import ResultsConfig
    from edge.daemon.results import ResultFilter
    from edge.model.contract import NUM_CLASSES
    from edge.model.engine import Engine
    from edge.model.groups import GroupScorer, configured
    from edge.model.runtime import make_interpreter

    progress("bare invoke")
    interp = make_interpreter(model, 1)
    index = interp.get_input_details()[0]["index"]
    interp.set_tensor(index, frame[None])
    report.timings["bare_invoke"] = measure(interp.invoke, frames, batches)
    del interp

    progress("engine")
    engine = Engine(model, 1, self_test=False)
    report.timings["engine_classify_top5"] = measure(lambda: engine.top_k(engine.classify(frame), 5), frames, batches)

    probs, labels = engine.classify(frame).copy(), engine.labels
    plain = ResultFilter(ResultsConfig(), labels)
    if len(labels) != NUM_CLASSES:  # a model of your own classes (`train`): the built-in groups are ImageNet's
        progress(f"results: label only (built-in groups skipped: the model has {len(labels)} classes, not ImageNet's {NUM_CLASSES})")
        report.timings["results_label"] = measure(lambda: plain.update(probs, 0.0), frames, batches)
        return
    progress("results: label only, and with groups bird/dog (the group sums alone: a 3 x 1001 product)")
    scorer = GroupScorer(configured({}, ("bird", "dog"), len(labels)), len(labels))
    report.timings["group_sums_bird_dog"] = measure(lambda: scorer.scores(probs), frames, batches)
    grouped = ResultFilter(ResultsConfig(groups=("bird", "dog")), labels, scorer)
    report.timings["results_label"] = measure(lambda: plain.update(probs, 0.0), frames, batches)
    report.timings["results_groups_bird_dog"] = measure(lambda: grouped.update(probs, 0.0), frames, batches)


def _pipeline_stages(report: BenchReport, model: Path, work: Path, jpeg: Path, frames: int, batches: int, progress: Callable[[str], None]) -> None:
    """The daemon's own pipeline from in-memory frames and from a 720p JPEG (draft, full, snapshots on)."""
    from edge.bench import snapshots
    from edge.model.preprocess import load_image

    progress("pipeline from in-memory frames")
    runner = PipelineRunner(parse(bench_config(model, work / "mem", {"kind": "synthetic"})))
    try:
        for _ in range(50):
            runner.step()
        report.timings["pipeline_memory_to_file"] = measure(runner.step, frames, batches)
        progress("allocation check")
        report.max_transient_alloc_bytes, report.retained_growth_bytes = allocation_check(runner, 300)
    finally:
        runner.close()

    for draft in (True, False):
        name = "draft" if draft else "full"
        progress(f"720p JPEG decode + crop/resize only ({name})")
        report.timings[f"decode_jpeg720_{name}"] = measure(lambda d=draft: load_image(jpeg, draft=d), max(50, frames // 3), batches)  # type: ignore[misc]
        progress(f"pipeline from the 720p JPEG ({name} decode)")
        source = {"kind": "images", "images": {"path": str(jpeg), "loop": True, "draft": draft}}
        runner = PipelineRunner(parse(bench_config(model, work / name, source)))
        try:
            for _ in range(20):
                runner.step()
            report.timings[f"pipeline_jpeg720_{name}"] = measure(runner.step, max(50, frames // 3), batches)
        finally:
            runner.close()

    progress("pipeline from the 720p JPEG with snapshots on, no change of the answer")
    report.timings["pipeline_jpeg720_draft_snapshots_on"] = snapshots.per_frame(model, work / "snap", jpeg, max(50, frames // 3), batches)
    progress("one snapshot on a change")
    report.extra["snapshot_on_change"] = snapshots.one_snapshot(work, jpeg)


def _process_stages(report: BenchReport, model: Path, work: Path, jpeg: Path, progress: Callable[[str], None]) -> None:
    """Whole `mnv1-edge run` processes: cold start to the first result, steady-state peak RSS."""
    from edge.bench.process import cold_start, steady_rss

    progress("cold start")
    (work / "cold").mkdir()
    cold_cfg = work / "cold.toml"
    cold_cfg.write_text(to_toml(bench_config(model, work / "cold", {"kind": "images", "images": {"path": str(jpeg)}}, stdout=True)))
    runs = [cold_start(cold_cfg) for _ in range(3)]
    report.cold_start_s = round(statistics.median(r[0] for r in runs), 3)
    report.cold_start_exit_s = round(statistics.median(r[1] for r in runs), 3)

    progress("steady-state RSS")
    rss_cfg = work / "rss.toml"
    rss_cfg.write_text(to_toml(bench_config(model, work / "rss", {"kind": "synthetic"})))
    report.rss_mb = round(max(steady_rss(rss_cfg, 2000), *(r[2] for r in runs)), 1)


def _judge(report: BenchReport) -> None:
    """The ratios side by side and each target met or missed."""
    t = report.timings
    report.ratios = {
        "engine_over_invoke_cpu": round(t["engine_classify_top5"].cpu_ms / t["bare_invoke"].cpu_ms, 3),
        "pipeline_over_invoke_cpu": round(t["pipeline_memory_to_file"].cpu_ms / t["bare_invoke"].cpu_ms, 3),
        "jpeg720_full_over_draft_wall": round(t["pipeline_jpeg720_full"].wall_ms / t["pipeline_jpeg720_draft"].wall_ms, 3),
    }
    measured = {
        "pipeline_over_invoke_cpu": report.ratios["pipeline_over_invoke_cpu"],
        "jpeg720_draft_ms": t["pipeline_jpeg720_draft"].wall_ms,
        "cold_start_s": report.cold_start_s,
        "rss_mb": report.rss_mb,
    }
    report.targets = {k: {"target": TARGETS[k], "measured": v, "ok": v <= TARGETS[k]} for k, v in measured.items()}
    report.targets["no_frame_sized_allocation"] = {
        "target": f"< {FRAME_BYTES} bytes per frame",
        "measured": report.max_transient_alloc_bytes,
        "ok": report.max_transient_alloc_bytes < FRAME_BYTES,
    }


def render(report: BenchReport) -> str:
    lines = [f"mnv1-edge bench: model {report.model}, cores {report.cores}", "", f"{'stage':34} {'wall ms/frame':>14} {'CPU ms/frame':>13}"]
    for name, t in report.timings.items():
        lines.append(f"{name:34} {t.wall_ms:14.3f} {t.cpu_ms:13.3f}")
    lines += [
        "",
        f"cold start to first result  {report.cold_start_s:.3f} s (process exit {report.cold_start_exit_s:.3f} s)",
        f"peak RSS                    {report.rss_mb:.1f} MB",
        f"largest per-frame transient allocation {report.max_transient_alloc_bytes} B (frame = {FRAME_BYTES} B); "
        f"retained growth over 300 frames {report.retained_growth_bytes} B",
        "",
        "ratios: " + ", ".join(f"{k} {v:.3f}" for k, v in report.ratios.items()),
        "targets:",
    ]
    for name, tgt in report.targets.items():
        lines.append(f"  {'ok  ' if tgt['ok'] else 'MISS'} {name}: {tgt['measured']} (target {tgt['target']})")
    for name, figures in report.extra.items():
        lines.append(f"{name}: {figures}")
    return "\n".join(lines)
