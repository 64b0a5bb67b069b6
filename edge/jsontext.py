"""JSON text every parser reads: a non-finite number becomes null (json.dumps writes NaN and Infinity)."""

from __future__ import annotations

import json
import math
from typing import Any


def finite(value: Any) -> Any:
    """`value` with every NaN or infinite float inside it (dicts, lists, tuples) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def dumps(value: Any, **options: Any) -> str:
    """json.dumps that cannot write NaN, Infinity or -Infinity (which are not JSON)."""
    return json.dumps(finite(value), allow_nan=False, **options)
