"""`mnv1-edge doctor`: installation checks, each OK/WARN/FAIL/SKIP with the fix; one module per group."""

from __future__ import annotations

from pathlib import Path

from edge.doctor.check import FAIL, OK, SKIP, WARN, Check, Context, source_kind
from edge.errors import EX_CONFIG, EX_UNAVAILABLE

__all__ = ["FAIL", "OK", "SKIP", "WARN", "Check", "Context", "exit_status", "run_all", "source_kind"]


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
