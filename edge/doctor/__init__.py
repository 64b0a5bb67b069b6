"""`mnv1-edge doctor`: installation checks, each OK/WARN/FAIL/SKIP with the fix; one module per group."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.errors import EX_CONFIG, EX_UNAVAILABLE

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


def run_all(config_path: Path, user: str) -> list[Check]:
    """Every check, in the order an operator fixes things: Python, config, camera, runtime and model, files, broker, board."""
    from edge.doctor import broker, camera, config, files, hardware, model, python

    loaded, config_check = config.load_config(config_path)
    ctx = Context(config_path, loaded, user)
    checks: list[Check] = [*python.checks(ctx), config_check, *camera.checks(ctx), *model.checks(ctx)]
    checks += [*files.checks(ctx), *broker.checks(ctx), *hardware.checks()]
    return checks


def exit_status(checks: list[Check]) -> int:
    """0 when nothing FAILed; EX_CONFIG (78) when the config itself did not load, else EX_UNAVAILABLE (69)."""
    failed = [c for c in checks if c.status == FAIL]
    if not failed:
        return 0
    return EX_CONFIG if any(c.check == "config" for c in failed) else EX_UNAVAILABLE


def source_kind(ctx: Context) -> str:
    return ctx.config.source.kind if ctx.config is not None else ""
