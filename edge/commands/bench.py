"""`mnv1-edge bench`: invoke, engine, pipeline, JPEG decode, cold start and RSS, side by side."""

from __future__ import annotations

import argparse

HELP = "benchmark bare invoke, engine, whole pipeline (in-memory and 720p JPEG), cold start and RSS on one core"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from edge.paths import default_model

    p.add_argument("--model", default=str(default_model()), help="converted model with its manifest (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--frames", type=int, default=300, help="frames per timed batch (default: %(default)s)")
    p.add_argument("--batches", type=int, default=5, help="timed batches; medians are reported (default: %(default)s)")
    p.add_argument("--all-cores", action="store_true", help="do not pin to one core")


def main(args: argparse.Namespace) -> int:
    import json
    import logging
    import sys
    from pathlib import Path

    from edge import bench

    logging.basicConfig(level=logging.WARNING)
    # Extra benchmarks (MQTT publish) are registered here with bench.register(name, fn).
    report = bench.run(
        Path(args.model),
        frames=args.frames,
        batches=args.batches,
        one_core=not args.all_cores,
        progress=lambda stage: print(f"bench: {stage} …", file=sys.stderr, flush=True),
    )
    print(json.dumps(report.to_dict(), indent=2) if args.json else bench.render(report))
    return 0
