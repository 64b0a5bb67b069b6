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


MODEL_HELP = (
    "converted model with its manifest beside it (default: model.path of /etc/mnv1-edge/config.toml on an installed device, "
    "else this checkout's models/mobilenet_v1_0.25_128_int8.tflite)"
)


def default_model() -> str:
    """--model's default: the installed config's model.path on a device, the checkout's build output elsewhere."""
    from edge.config import DEFAULT_PATH, load
    from edge.paths import default_model as checkout_model

    if DEFAULT_PATH.is_file():
        return load(DEFAULT_PATH).model.path  # a broken config is one clear ConfigError line
    return str(checkout_model())
