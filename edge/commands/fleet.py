"""`mnv1-edge fleet`: one row per daemon from the broker (online, stalled, moved, light, stale, offline); exit 69 if any is not ok."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from edge.commands import bounded_float

if TYPE_CHECKING:
    from edge.config import MqttSinkConfig

HELP = (
    "show every daemon on a broker: status, last answer, fps, latency, spool; "
    "exit 69 if any is offline, stalled, moved, out of its light or stale, or none is found"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--broker", metavar="HOST[:PORT]", help="the broker (port 1883, or 8883 with --tls); default: --config's sinks.mqtt")
    p.add_argument("--config", help="take the broker, credentials and TLS from this daemon config's sinks.mqtt (options override it)")
    p.add_argument("--prefix", type=prefix, default="mnv1-edge", help="topic prefix; devices publish under PREFIX/DEVICE/ (default: %(default)s)")
    seconds, stale = bounded_float(0, 3600), bounded_float(1, 30 * 86400)
    p.add_argument("--wait", type=seconds, default=2.0, metavar="S", help="collect messages this long before printing (default: %(default)s)")
    p.add_argument("--stale-after", type=stale, metavar="S", help="no stats, frame or result this long = stale (default: 3 stats intervals, or 180)")
    p.add_argument("--watch", action="store_true", help="refresh until interrupted")
    p.add_argument("--interval", type=bounded_float(0.1, 86400), default=2.0, metavar="S", help="refresh period with --watch (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print JSON (with --watch: one document per refresh)")
    g = p.add_argument_group("credentials and TLS (as the MQTT sink; the password from a file or $MNV1_EDGE_MQTT_PASSWORD)")
    g.add_argument("--username")
    g.add_argument("--username-file")
    g.add_argument("--password-file")
    g.add_argument("--tls", action="store_true", help="connect with TLS")
    g.add_argument("--ca-file", help="CA bundle to verify the broker (implies --tls)")
    g.add_argument("--cert-file", help="client certificate for mutual TLS (implies --tls)")
    g.add_argument("--key-file", help="client key for mutual TLS")
    g.add_argument("--insecure", action="store_true", help="do not check the broker's host name")


def prefix(text: str) -> str:
    """argparse type for --prefix: a topic, no wildcards (the command adds its own +)."""
    from edge.config.sinks import topic_problem

    problem = topic_problem(text.strip("/"))
    if problem:
        raise argparse.ArgumentTypeError(f"{problem}, got {text!r}")
    return text


def main(args: argparse.Namespace) -> int:
    import signal
    import sys
    import threading

    from edge.errors import EX_UNAVAILABLE, SinkError
    from edge.fleet.state import Fleet
    from edge.fleet.subscriber import Subscriber
    from edge.fleet.table import render_json, render_table

    config = broker_config(args)
    fleet = Fleet(args.prefix)
    subscriber = Subscriber(config, fleet)
    try:
        subscriber.start()
    except SinkError as exc:  # a secret file: name the option, not the config key, when it came from one
        if args.config:
            raise
        message = str(exc).replace("sinks.mqtt.password_file", "--password-file")
        raise SinkError(message.replace("sinks.mqtt.username_file", "--username-file")) from exc
    broker = f"{config.host}:{config.port}"
    # Ctrl-C (SIGINT) ends a --watch between two refreshes, not wherever the main thread happens to
    # be: a KeyboardInterrupt inside paho's or the subscriber's locking could leave the stop below
    # waiting for a thread that waits for us (seen on a loaded machine: no exit after 10 s).
    interrupted = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda signum, frame: interrupted.set())
    try:
        interrupted.wait(max(0.0, args.wait))  # retained messages arrive at once; live stats within an interval
        while not interrupted.is_set():
            rows = subscriber.rows(args.stale_after)
            if args.json:
                print(render_json(rows, broker, fleet.prefix, fleet.ignored), flush=True)
            else:
                if args.watch and sys.stdout.isatty():
                    print("\x1b[H\x1b[2J", end="")
                print(render_table(rows, fleet.ignored) if rows else f"no devices under {fleet.prefix}/ on {broker}", flush=True)
            if not args.watch:
                return 0 if rows and all(r.ok for r in rows) else EX_UNAVAILABLE
            interrupted.wait(max(0.1, args.interval))
        return 130  # as a shell reports a command Ctrl-C ended
    finally:
        signal.signal(signal.SIGINT, previous)
        subscriber.stop()


def broker_config(args: argparse.Namespace) -> MqttSinkConfig:
    """The MQTT sink's settings from --config (if given) with the command-line options over them."""
    import dataclasses
    from pathlib import Path

    from edge.config import MqttSinkConfig, load
    from edge.errors import ConfigError

    base = load(Path(args.config)).sinks.mqtt if args.config else MqttSinkConfig()
    if not args.broker and not args.config:
        raise ConfigError("give --broker HOST[:PORT] (or --config with a sinks.mqtt section)")
    tls_on = args.tls or bool(args.ca_file or args.cert_file) or base.tls.enabled
    tls = dataclasses.replace(
        base.tls,
        enabled=tls_on,
        ca_file=args.ca_file or base.tls.ca_file,
        cert_file=args.cert_file or base.tls.cert_file,
        key_file=args.key_file or base.tls.key_file,
        insecure=args.insecure or base.tls.insecure,
    )
    host, port = base.host, base.port
    if args.broker:
        host, port = parse_broker(args.broker, 8883 if tls_on else 1883)
    username_file = args.username_file or ("" if args.username else base.username_file)
    username = args.username or ("" if args.username_file else base.username)
    return dataclasses.replace(
        base, host=host, port=port, username=username, username_file=username_file, password_file=args.password_file or base.password_file, tls=tls
    )


def parse_broker(text: str, default_port: int) -> tuple[str, int]:
    """HOST, HOST:PORT, [v6]:PORT."""
    from edge.errors import ConfigError

    host, sep, port = text.rpartition(":")
    if not sep or (host.count(":") and not host.endswith("]")):  # no port, or a bare IPv6 address
        host, port = text, str(default_port)
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--broker: expected HOST or HOST:PORT, got {text!r}")
    return host, int(port)
