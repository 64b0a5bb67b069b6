"""`mnv1-edge convert` (placeholder until its issue lands)."""

from __future__ import annotations

import argparse

HELP = "convert (not implemented yet)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def main(args: argparse.Namespace) -> int:
    raise SystemExit("mnv1-edge convert: not implemented yet")
