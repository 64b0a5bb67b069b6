"""How a setting is declared (default, description, range) and how a dict becomes a dataclass."""

# Frigate's config is the model: every field carries its default, description and range on the field
# itself, and cross-field checks sit on the class (a `check` method), so a reader finds a key's rules
# where the key is declared. Parsing (dict → config) is separate from loading (file → dict), so tests
# build configs from dicts.

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable
from dataclasses import field
from typing import Any, Literal

from edge.errors import ConfigError

# need(ok, key, message): raise ConfigError for the dotted key when ok is false.
Need = Callable[[bool, str, str], None]


def setting(
    default: Any,
    doc: str,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> Any:
    """A leaf setting with its default, its one-line description and its numeric range."""
    if isinstance(default, (list, dict)):
        raise TypeError("use tuples for sequence defaults")
    return field(default=default, metadata={"doc": doc, "ge": ge, "gt": gt, "le": le, "lt": lt})


def table(doc: str) -> Any:
    """A free-form table of name → value (e.g. `[groups]`), empty by default; typed dict[str, X]."""
    return field(default_factory=dict, metadata={"doc": doc})


def section(cls: type, doc: str) -> Any:
    """A nested table of settings."""
    return field(default_factory=cls, metadata={"doc": doc})


_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def parse(data: dict[str, Any], cls: type[Any], path: str = "") -> Any:
    """Build the dataclass `cls` from a dict, naming the dotted key path of any error."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path or '<root>'}: expected a table, got {describe(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    removed: dict[str, str] = getattr(cls, "REMOVED", {})  # old key → what to do instead
    for name in sorted(set(data) & set(removed)):
        raise ConfigError(f"{join(path, name)}: {removed[name]}")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{join(path, unknown[0])}: unknown key (valid keys: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, value in data.items():
        key = join(path, name)
        kwargs[name] = _convert(value, hints[name], key)
        _check_range(kwargs[name], fields[name].metadata, key)
    config = cls(**kwargs)
    check = getattr(config, "check", None)
    if check is not None:

        def need(ok: bool, key: str, message: str) -> None:
            if not ok:
                raise ConfigError(f"{join(path, key)}: {message}")

        check(need)
    return config


def _convert(value: Any, hint: Any, path: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return parse(value, hint, path)  # type: ignore[arg-type]
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ConfigError(f"{path}: expected one of {', '.join(map(repr, choices))}, got {value!r}")
        return value
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:  # tuple[X, ...]: a list of any length
            if not isinstance(value, list):
                raise ConfigError(f"{path}: expected a list, got {describe(value)}")
            return tuple(_convert(v, args[0], f"{path}[{i}]") for i, v in enumerate(value))
        if not isinstance(value, list) or len(value) != len(args):
            raise ConfigError(f"{path}: expected a list of {len(args)} values, got {describe(value)}")
        return tuple(_convert(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a table, got {describe(value)}")
        return {str(k): _convert(v, typing.get_args(hint)[1], join(path, str(k))) for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if not all(a in _TYPE_NAMES for a in args):
            raise TypeError(f"unsupported config type {hint}")
        if type(value) not in args:  # type(), not isinstance: true is not an integer here
            raise ConfigError(f"{path}: expected {' or '.join(_TYPE_NAMES[a] for a in args)}, got {describe(value)}")
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in _TYPE_NAMES and (type(value) is not hint):
        raise ConfigError(f"{path}: expected {_TYPE_NAMES[hint]}, got {describe(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        # TOML allows nan and inf; no setting here means either (a timer of inf overflows time_t).
        raise ConfigError(f"{path}: expected a finite number, got {value}")
    return value


def _check_range(value: Any, meta: typing.Mapping[str, Any], path: str) -> None:
    values = value if isinstance(value, tuple) else (value,)
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        ge, gt, le, lt = (meta.get(k) for k in ("ge", "gt", "le", "lt"))
        if (ge is not None and v < ge) or (gt is not None and v <= gt) or (le is not None and v > le) or (lt is not None and v >= lt):
            raise ConfigError(f"{path}: must be {range_text(meta)}, got {v}")


def range_text(meta: typing.Mapping[str, Any]) -> str:
    """The field's range in words, for errors and the example config: "between 0 and 1"."""
    lo = meta.get("ge") if meta.get("ge") is not None else meta.get("gt")
    hi = meta.get("le") if meta.get("le") is not None else meta.get("lt")
    lo_open, hi_open = meta.get("gt") is not None, meta.get("lt") is not None
    if lo is not None and hi is not None:
        if not lo_open and not hi_open:
            return f"between {_num(lo)} and {_num(hi)}"
        return f"in {'(' if lo_open else '['}{_num(lo)}, {_num(hi)}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'greater than' if lo_open else 'at least'} {_num(lo)}"
    if hi is not None:
        return f"{'less than' if hi_open else 'at most'} {_num(hi)}"
    return ""


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def join(path: str, key: str) -> str:
    if not key:
        return path or "<root>"
    return f"{path}.{key}" if path else key


def describe(value: Any) -> str:
    kinds = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a table"}
    return f"{kinds.get(type(value), type(value).__name__)} {value!r}" if not isinstance(value, dict) else "a table"
