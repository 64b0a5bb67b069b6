"""arm_cost script-mode guest: instructions per frame of mnv1-edge's own pipeline on emulated Pi cores.

Run by ../shared/tools/arm_cost/measure.sh (docs/design/arm-cost.md has the exact commands); this checkout is
mounted at /mnt/repo. One unit = one frame:

  invoke           Engine.invoke(frame): copy a 128x128x3 frame into the input tensor + invoke
                   (--threads N: model.threads = N; every guest thread is counted)
  process          SyntheticSource.read() + Pipeline.process(frame, stats) with the file sink
  picamera2-yuv420 make_source(picamera2, YUV420 lores 128x128, ISP crop) .read() + process: the
                   lores buffer (stride as libcamera sets it) converted by swscale when PyAV is
                   importable (--no-av: the NumPy fallback), the frozen-frame guard included
  picamera2-bgr888 the same with Pi 5's BGR888 lores (R,G,B bytes, handed to the model as they are)
  view-check       one moved-camera check of a fixed-camera model (edge/sources/moved.py): a frame's shift
                   against 8 grey references, as the guard does every source.view_check_s (one unit = one check)
  light-check      one light check of a model with a training light (edge/sources/light.py): a frame's mean
                   luma and the vote, as the guard does every source.light_check_s (one unit = one check)

The camera is tests/support/fake_picamera2.py: it opens the source and makes 8 lores buffers; per
frame its capture_array is a stub cycling through them, so libcamera's own capture cost is excluded.
PyAV is not in the arm64 venv: --site DIR puts an extracted aarch64 wheel on sys.path (a Pi with
picamera2 has python3-av). Markers: 1 after --warmup frames, 2 after --first more, 3 after --frames.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
from pathlib import Path
from typing import Any

import armcost_guest

REPO = Path("/mnt/repo")
SCENARIOS = ("invoke", "process", "picamera2-yuv420", "picamera2-bgr888", "view-check", "light-check")


class _SetItem:
    """The one monkeypatch method fake_picamera2.install uses."""

    @staticmethod
    def setitem(mapping: dict[str, Any], key: str, value: Any) -> None:
        mapping[key] = value


def make_config(scenario: str, model: str, tmp: Path, threads: int) -> Any:
    from edge.config import parse

    data: dict[str, Any] = {
        "device_id": "armcost",
        "state_dir": str(tmp / "state"),
        "model": {"path": model, "threads": threads},
        "source": {"kind": "synthetic"},
        "sinks": {"file": {"enabled": True, "path": str(tmp / "results.jsonl")}},
    }
    if scenario.startswith("picamera2"):
        data["source"] = {"kind": "picamera2", "picamera2": {"lores_format": scenario.split("-")[1].upper()}}
    return parse(data)


def camera_source(config: Any, scenes: list[Any]) -> Any:
    from edge.sources import SourceSpec, make_source
    from tests.support import fake_picamera2 as fake

    fmt = config.source.picamera2.lores_format
    camera = fake.FakeCamera(scenes[0], platform=fake.Platform.PISP if fmt == "BGR888" else fake.Platform.VC4)
    fake.install(_SetItem(), camera)
    source = make_source(SourceSpec(config.source, 0.875))
    source.open()
    inner: Any = getattr(source, "source", source)  # the frozen-frame guard wraps the camera source
    cam = inner._cam
    assert cam.camera_config["lores"]["size"] == (128, 128), cam.camera_config["lores"]
    buffers = []
    for scene in scenes:
        camera.scene = scene
        buffers.append(cam.capture_array("lores", wait=1.0))
    cycle = itertools.cycle(buffers)
    cam.capture_array = lambda name="main", wait=None: next(cycle)
    return source, type(inner._convert).__name__


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario", choices=SCENARIOS)
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--first", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--site", default="", help="extra sys.path entry (an extracted aarch64 PyAV wheel)")
    ap.add_argument("--no-av", action="store_true", help="make PyAV unimportable (the NumPy YUV420 path)")
    ap.add_argument("--model", default=str(REPO / "models/mobilenet_v1_0.25_128_int8.tflite"))
    args = ap.parse_args()
    if args.site:
        sys.path.insert(0, args.site)
    if args.no_av:
        sys.modules["av"] = None  # type: ignore[assignment]

    from edge.daemon.pipeline import FramePipeline
    from edge.daemon.sequence import RecordSequence
    from edge.daemon.stats import Stats
    from edge.sources import SourceSpec, make_source

    tmp = Path(tempfile.gettempdir()) / "armcost-pipeline"
    config = make_config(args.scenario, args.model, tmp, args.threads)
    seq = RecordSequence(Path(config.state_dir))
    pipeline = FramePipeline(config, seq)
    pipeline.open_sinks(None)
    stats = Stats()
    synthetic = make_source(SourceSpec(make_config("process", args.model, tmp, 1).source, 0.875))
    synthetic.open()
    frames = [synthetic.read() for _ in range(8)]
    pool = [f.pixels for f in frames if f is not None]
    info: dict[str, Any] = {"scenario": args.scenario, "threads": args.threads}
    if args.scenario == "invoke":
        engine = pipeline.engine

        def step(i: int) -> None:
            engine.invoke(pool[i % 8])

    elif args.scenario == "view-check":
        import numpy as np

        from edge.model.viewref import ShiftEstimator, grey

        estimator = ShiftEstimator(np.stack([grey(p) for p in pool]))

        def step(i: int) -> None:
            estimator.estimate(pool[i % 8])

    elif args.scenario == "light-check":
        from edge.model.light import LightRange, LightVote, luma

        vote = LightVote(LightRange(90.0, 115.0))

        def step(i: int) -> None:
            vote.add(luma(pool[i % 8]))

    else:
        source = synthetic
        if args.scenario.startswith("picamera2"):
            from PIL import Image

            scenes = [__import__("numpy").asarray(Image.fromarray(p).resize((256, 256), Image.Resampling.BILINEAR)) for p in pool]
            source, info["converter"] = camera_source(config, scenes)

        def step(i: int) -> None:
            frame = source.read()
            assert frame is not None  # the synthetic and camera sources never end
            pipeline.process(frame, stats)

    i = 0
    for mark, count in ((1, args.warmup), (2, args.first), (3, args.frames)):
        for _ in range(count):
            step(i)
            i += 1
        armcost_guest.mark(mark)
    unit = "check" if args.scenario.endswith("-check") else "frame"
    armcost_guest.report(args.frames, units_first=args.first, unit=unit, frames_processed=stats.frames, **info)
    pipeline.flush()
    pipeline.close()
    seq.close()


if __name__ == "__main__":
    main()
