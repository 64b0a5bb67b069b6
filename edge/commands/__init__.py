"""One module per subcommand: argparse wiring only at import, the work imported inside main()."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


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


def host_port(text: str) -> tuple[str, int]:
    """argparse type for HOST[:PORT] (port 1883 when not given)."""
    host, _, port = text.rpartition(":") if ":" in text else (text, "", "1883")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST or HOST:PORT with a port from 1 to 65535, got {text!r}")
    return host, int(port)


def bounded_float(low: float, high: float, *, above: bool = False, below: bool = False) -> Callable[[str], float]:
    """THE argparse type for a number option: finite (float() alone accepts nan and inf), in [low, high],
    or strictly above `low` / below `high`. Every float option of every command uses it; a test walks
    the parser to keep it so."""
    closed = f"from {_num(low)} to {_num(high)}"
    span = f"in {'(' if above else '['}{_num(low)}, {_num(high)}{')' if below else ']'}" if above or below else closed

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        inside = (value > low if above else value >= low) and (value < high if below else value <= high)
        if not (math.isfinite(value) and inside):
            raise argparse.ArgumentTypeError(f"expected a number {span}, got {text!r}")
        return value

    return parse


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def int_at_least(minimum: int, why: str = "") -> Callable[[str], int]:
    """argparse type for a count of at least `minimum` (`why` says what a smaller one cannot do)."""
    what = f"an integer >= {minimum}" + (f" ({why})" if why else "")
    return lambda text: _int_at_least(text, minimum, what)


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
