"""What every doctor check returns (Check, OK/WARN/FAIL/SKIP) and may look at (Context)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge.config import Config

OK, WARN, FAIL, SKIP = "OK", "WARN", "FAIL", "SKIP"


@dataclass(frozen=True)
class Check:
    check: str  # short name, e.g. "python", "broker"
    status: str  # OK, WARN, FAIL, or SKIP (not needed with this config)
    detail: str  # what was found, and how it was checked
    fix: str = ""  # what to do about a WARN or FAIL

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Context:
    """What every check may look at: the config (None when it did not load) and the service user."""

    config_path: Path
    config: Config | None
    user: str  # the user whose permissions the directory checks test


def source_kind(ctx: Context) -> str:
    return ctx.config.source.kind if ctx.config is not None else ""
