"""Drives an MqttSink in its own process (so tests can kill -9 it), fed by commands on stdin."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from pathlib import Path

from edge.config import parse
from edge.model.contract import Prediction
from edge.record import Record
from edge.sinks.mqtt.sink import MqttSink

# Commands: `write N` (the next N records; answers `written LAST_SEQ`), `drain SECONDS` (waits until
# the spool is empty; answers `drained DEPTH`), `close` (clean stop; answers `closed`, exits 0).
# SIGTERM also closes cleanly.


def record(seq: int, device: str) -> Record:
    now = time.time()
    top = (Prediction(281, "tabby", 0.75), Prediction(282, "tiger cat", 0.125))
    return Record(seq, now, now, device, "synthetic", top, 2.5, "0" * 64)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--spool", type=Path, required=True)
    p.add_argument("--device", default="cam")
    p.add_argument("--first", type=int, default=1)
    p.add_argument("--keepalive", type=int, default=5)
    p.add_argument("--username", default="")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    mqtt = {
        "enabled": True,
        "port": args.port,
        "keepalive_s": args.keepalive,
        "reconnect_max_s": 2.0,
        "username": args.username,
        "spool": {"path": str(args.spool)},
    }
    config = parse({"device_id": args.device, "sinks": {"mqtt": mqtt}})
    sink = MqttSink(config.sinks.mqtt, config.device)

    def on_term(signum: int, frame: object) -> None:
        raise Stop  # breaks out of the blocking stdin read

    signal.signal(signal.SIGTERM, on_term)
    sink.open()
    try:
        commands(sink, args.first, config.device)
    except Stop:
        pass
    sink.close()
    print("closed", flush=True)
    return 0


class Stop(Exception):
    pass


def commands(sink: MqttSink, seq: int, device: str) -> None:
    print("ready", flush=True)
    for line in sys.stdin:
        cmd, *rest = line.split()
        if cmd == "write":
            for _ in range(int(rest[0])):
                sink.write(record(seq, device))
                seq += 1
            print(f"written {seq - 1}", flush=True)
        elif cmd == "drain":
            deadline = time.monotonic() + float(rest[0])
            while sink.spool.depth() and time.monotonic() < deadline:
                time.sleep(0.05)
            print(f"drained {sink.spool.depth()}", flush=True)
        elif cmd == "close":
            return


if __name__ == "__main__":
    sys.exit(main())
