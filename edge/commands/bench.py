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
    p.add_argument(
        "--mqtt",
        action="store_true",
        help="also measure MQTT publishing through the durable spool, against a private mosquitto on a free loopback port",
    )
    p.add_argument("--mqtt-records", type=int, default=20000, help="records in the MQTT benchmark (default: %(default)s)")


def main(args: argparse.Namespace) -> int:
    import json
    import logging
    import sys
    from pathlib import Path

    from edge import bench

    logging.basicConfig(level=logging.WARNING)
    if args.mqtt:
        bench.register("mqtt_publish", lambda: _mqtt_publish(args.mqtt_records))
    report = bench.run(
        Path(args.model),
        frames=args.frames,
        batches=args.batches,
        one_core=not args.all_cores,
        progress=lambda stage: print(f"bench: {stage} …", file=sys.stderr, flush=True),
    )
    print(json.dumps(report.to_dict(), indent=2) if args.json else bench.render(report))
    return 0


def _mqtt_publish(records: int) -> dict[str, object]:
    import tempfile
    from pathlib import Path

    from edge.localbroker import Mosquitto
    from edge.sinks.mqtt_bench import run_publish_benchmark

    # /var/tmp, not a tmpfs /tmp: the spool's write amplification is only meaningful on a disk.
    with tempfile.TemporaryDirectory(dir="/var/tmp", prefix="mnv1-edge-bench-") as tmp, Mosquitto(Path(tmp) / "broker") as broker:
        return run_publish_benchmark(records, "127.0.0.1", broker.port, Path(tmp) / "spool")
