"""The config file: it loads and every key is valid."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edge.doctor.check import FAIL, OK, Check
from edge.errors import ConfigError

if TYPE_CHECKING:
    from edge.config import Config


def load_config(path: Path) -> tuple[Config | None, Check]:
    from edge.config import load

    try:
        config = load(path)
    except ConfigError as exc:
        return None, Check("config", FAIL, str(exc), f"fix the key named; `mnv1-edge check-config {path}` re-checks it, `--example` shows every key")
    sinks = [name for name in ("stdout", "file", "mqtt", "prometheus") if getattr(config.sinks, name).enabled]
    detail = f"{path}: device {config.device}, source {config.source.kind}, sinks {', '.join(sinks)}"
    return config, Check("config", OK, detail)
