"""One module per subcommand: argparse wiring only at import, the work imported inside main()."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """argparse type for counts that must be at least 1."""
    return _int_at_least(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """argparse type for counts where 0 means "skip"."""
    return _int_at_least(text, 0, "an integer >= 0")


def thread_count(text: str) -> int:
    """argparse type for interpreter threads: 1 up to the config's model.threads bound (an absurd
    count crashes the runtime; 0 or less it reports as a corrupt model)."""
    from edge.config.model import MAX_THREADS

    value = positive_int(text)
    if value > MAX_THREADS:
        raise argparse.ArgumentTypeError(f"expected at most {MAX_THREADS} (this machine's cores, or 4), got {text!r}")
    return value


def _int_at_least(text: str, minimum: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value
