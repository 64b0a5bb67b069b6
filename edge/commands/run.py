"""`mnv1-edge run` (placeholder until its issue lands)."""

from __future__ import annotations

import argparse

HELP = "run (not implemented yet)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def main(args: argparse.Namespace) -> int:
    raise SystemExit("mnv1-edge run: not implemented yet")
