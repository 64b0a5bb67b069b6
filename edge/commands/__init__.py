"""One module per subcommand: argparse wiring only at import, the work imported inside main()."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """argparse type for counts that must be at least 1."""
    return _int_at_least(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """argparse type for counts where 0 means "skip"."""
    return _int_at_least(text, 0, "an integer >= 0")


def _int_at_least(text: str, minimum: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value
