"""`mnv1-edge check-config`: validate a config file and print it resolved, or the error."""

from __future__ import annotations

import argparse

HELP = "validate a config file and check that what `run` needs is there (files, folders, devices), saying what it could not check"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from edge.config import DEFAULT_PATH

    p.add_argument("path", nargs="?", default=str(DEFAULT_PATH), help="config file (default: %(default)s)")
    p.add_argument("--example", action="store_true", help="print a complete commented config with every default, and exit")
    p.add_argument(
        "--syntax-only", action="store_true", help="only parse the config (keys, types, ranges); do not look at the files and folders it names"
    )


def main(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from edge.config import Config, example_toml, load
    from edge.errors import EX_CONFIG

    if args.example:
        print(example_toml(), end="")
        return 0
    config = load(Path(args.path))
    summary = f"device {config.device}, source {config.source.kind}, model {config.model.path}"
    if args.syntax_only:
        print(f"{args.path}: syntax OK ({summary}); files, folders and devices not checked (--syntax-only)")
        return 0
    from edge.daemon.preflight import preflight

    result = preflight(config)
    for problem in result.problems:
        print(f"mnv1-edge check-config: error: {args.path}: {problem}", file=sys.stderr)
    if config == Config():
        result.notes.append("every key is at its default (an empty config?): `mnv1-edge check-config --example` lists them")
    for note in result.notes:
        print(f"{args.path}: note: {note}", file=sys.stderr)
    if result.problems:
        return EX_CONFIG
    print(f"{args.path}: OK ({summary})")
    print(f"  checked: {'; '.join(result.checked)}")
    if result.skipped:
        print(f"  not checked: {'; '.join(result.skipped)}")
    return 0
