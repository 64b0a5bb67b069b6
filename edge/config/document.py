"""Configs as TOML text: the commented example with every key, and a writer for generated configs."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from edge.config.fields import join, range_text


def documented_fields(cls: type[Any], prefix: str = "") -> list[tuple[str, Any, str]]:
    """(dotted key, default, description) for every leaf setting: for docs and the example test."""
    out: list[tuple[str, Any, str]] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = join(prefix, f.name)
        if dataclasses.is_dataclass(hints[f.name]):
            out.extend(documented_fields(hints[f.name], key))
        else:
            out.append((key, _default(f), f.metadata["doc"]))
    return out


def example_toml(cls: type[Any]) -> str:
    """A complete, commented config with every key at its default (examples/config.toml)."""
    lines = [
        "# mnv1-edge configuration: every key, at its default, with what it does.",
        "# Install as /etc/mnv1-edge/config.toml; check with `mnv1-edge check-config PATH`.",
    ]
    _emit(cls, "", lines)
    return "\n".join(lines) + "\n"


def _default(f: dataclasses.Field[Any]) -> Any:
    return f.default_factory() if f.default is dataclasses.MISSING and f.default_factory is not dataclasses.MISSING else f.default


def _is_table(hint: Any) -> bool:
    """A section or a free-form table (dict): written as [key] after the plain keys."""
    return dataclasses.is_dataclass(hint) or typing.get_origin(hint) is dict


def _emit(cls: type[Any], prefix: str, lines: list[str]) -> None:
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    for f in fields:
        if not _is_table(hints[f.name]):
            bounds = range_text(f.metadata)
            lines.append(f"# {f.metadata['doc']}" + (f" ({bounds})" if bounds else ""))
            lines.append(f"{f.name} = {toml_value(f.default)}")
    for f in fields:
        key = join(prefix, f.name)
        if dataclasses.is_dataclass(hints[f.name]):
            lines.extend(["", f"[{key}]  # {f.metadata['doc']}"])
            _emit(hints[f.name], key, lines)
        elif _is_table(hints[f.name]):
            lines.extend(["", f"[{key}]  # {f.metadata['doc']}"])
            lines.extend(f"{k} = {toml_value(v)}" for k, v in _default(f).items())


def to_toml(data: dict[str, Any], prefix: str = "") -> str:
    """Write a config dict (scalars, lists, nested tables) as TOML: for generated configs."""
    lines = [f"{k} = {toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for k, v in data.items():
        if isinstance(v, dict):
            name = join(prefix, k)
            lines += [f"[{name}]", to_toml(v, name)]
    return "\n".join(lines) + "\n"


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)
