"""`mnv1-edge bench`: invoke, engine, pipeline, JPEG decode, cold start and RSS, side by side."""

from __future__ import annotations

import argparse

from edge.commands import MODEL_HELP, default_model, host_port, positive_int

HELP = "benchmark bare invoke, engine, whole pipeline (in-memory and 720p JPEG), cold start and RSS on one core"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help=MODEL_HELP)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--frames", type=positive_int, default=300, help="frames per timed batch (default: %(default)s)")
    p.add_argument("--batches", type=positive_int, default=5, help="timed batches; medians are reported (default: %(default)s)")
    p.add_argument("--all-cores", action="store_true", help="do not pin to one core")
    p.add_argument(
        "--mqtt",
        type=host_port,
        metavar="HOST[:PORT]",
        help="also measure MQTT publishing through the durable spool against this broker (a private one; `make bench` starts one)",
    )
    p.add_argument("--mqtt-records", type=positive_int, default=20000, help="records in the MQTT benchmark (default: %(default)s)")


def main(args: argparse.Namespace) -> int:
    import json
    import logging
    import sys
    from pathlib import Path

    from edge.bench import pipeline as bench

    logging.basicConfig(level=logging.WARNING)
    if args.mqtt:
        host, port = args.mqtt
        bench.register("mqtt_publish", lambda: _mqtt_publish(args.mqtt_records, host, port))
    report = bench.run(
        Path(args.model or default_model()),
        frames=args.frames,
        batches=args.batches,
        one_core=not args.all_cores,
        progress=lambda stage: print(f"bench: {stage} …", file=sys.stderr, flush=True),
    )
    print(json.dumps(report.to_dict(), indent=2) if args.json else bench.render(report))
    return 0


def _mqtt_publish(records: int, host: str, port: int) -> dict[str, object]:
    import tempfile
    from pathlib import Path

    from edge.bench.mqtt import run_publish_benchmark

    # /var/tmp, not a tmpfs /tmp: the spool's write amplification is only meaningful on a disk.
    with tempfile.TemporaryDirectory(dir="/var/tmp", prefix="mnv1-edge-bench-") as tmp:
        return run_publish_benchmark(records, host, port, Path(tmp) / "spool")
