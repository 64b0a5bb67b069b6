"""`mnv1-edge check-config`: validate a config file and print it resolved, or the error."""

from __future__ import annotations

import argparse

HELP = "validate a config file (unknown keys and wrong types are named by their dotted path)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from edge.config import DEFAULT_PATH

    p.add_argument("path", nargs="?", default=str(DEFAULT_PATH), help="config file (default: %(default)s)")
    p.add_argument("--example", action="store_true", help="print a complete commented config with every default, and exit")


def main(args: argparse.Namespace) -> int:
    from pathlib import Path

    from edge.config import example_toml, load

    if args.example:
        print(example_toml(), end="")
        return 0
    config = load(Path(args.path))
    print(f"{args.path}: OK (device {config.device}, source {config.source.kind}, model {config.model.path})")
    return 0
