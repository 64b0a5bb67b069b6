"""The training heads by name: the one list `train` iterates (light: `mnv1-edge --help` reads it before numpy)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edge.train.heads.base import Head

# name: (its module in this package, what `train --help` says of it, on its own). The order is
# `auto`'s and the report's. Each module declares its heads in HEADS (base.py: what a head
# declares); removing a head from `train` is removing its line here. Removed, by measurement
# (docs/design/train-heads.md): `probs` (never better than `features`) and `positions-2x` (never
# `auto`'s choice once `change` and `scene-2x` came, and the slowest to train).
_EMPTY = "named absent, background, empty, none or nothing"  # scenes.EMPTY_NAMES, without importing numpy (a test compares)
_CATALOGUE = {
    "features": ("features", ""),  # the 256 average-pooled features
    "positions": ("positions", ""),  # layer 22's 8x8 map, scored cell by cell
    "scene-2x": ("scene", f"what differs from the empty scene, ~3.5x, needs a class folder {_EMPTY}"),
    "change": (
        "change",
        "whether the pixels differ from the empty scene at all once it is moved onto the frame, ~3-5x, "
        f"needs exactly two class folders, one {_EMPTY}",
    ),
}
NAMES = tuple(_CATALOGUE)
HELP = {name: text for name, (_, text) in _CATALOGUE.items() if text}  # argparse help text: "%%" is a percent sign


def get(name: str) -> Head:
    """The head called `name` (one of NAMES)."""
    if name not in _CATALOGUE:
        raise ValueError(f"no head {name!r}; the heads are {', '.join(NAMES)}")
    heads: dict[str, Head] = importlib.import_module(f"{__name__}.{_CATALOGUE[name][0]}").HEADS
    return heads[name]


def all_heads() -> tuple[Head, ...]:
    """Every head, in NAMES order."""
    return tuple(get(name) for name in NAMES)
