"""The `[groups]` table: user label groups (name → class indices, "a-b" ranges, group names)."""

from __future__ import annotations

from typing import Any

from edge.config.fields import Need, table
from edge.errors import ConfigError

# The type the parser checks each group against: a list of indices and strings.
GroupsTable = dict[str, tuple[int | str, ...]]


def groups_table() -> Any:
    return table('user label groups: name = [class indices, "a-b" ranges, group names], e.g. feeder = ["bird", 336]')


def check_groups(groups: GroupsTable, names: tuple[str, ...], need: Need) -> None:
    """Every user group resolves (no empty group, no cycle, indices 0-1000, known names), and every
    name in results.groups is a built-in or user group."""
    from edge.model import groups as model_groups

    try:
        model_groups.check(groups, names)
    except ConfigError as exc:
        key, _, message = str(exc).partition(": ")
        need(False, key, message)
