"""`mnv1-edge run`: the on-device daemon (what mnv1-edge.service starts)."""

from __future__ import annotations

import argparse

from edge.commands import positive_int

HELP = "run the daemon: capture frames, classify them, publish results (SIGTERM stops, SIGHUP reloads)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from edge.config import DEFAULT_PATH

    p.add_argument("--config", default=str(DEFAULT_PATH), help="config file (default: %(default)s)")
    p.add_argument("--max-frames", type=positive_int, metavar="N", help="exit 0 after classifying N frames (tests, demos; default: until stopped)")
    p.add_argument("--once", action="store_true", help="classify one frame and exit (same as --max-frames 1)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), help="override the config's log_level")


def main(args: argparse.Namespace) -> int:
    from pathlib import Path

    from edge.config import load
    from edge.daemon.loop import Daemon
    from edge.log import setup

    path = Path(args.config)
    config = load(path)
    setup(args.log_level or config.log_level)
    max_frames = 1 if args.once else (args.max_frames or 0)  # 0 = no limit
    return Daemon(config, path, max_frames=max_frames, log_level=args.log_level or "").run()
