"""One error family: the CLI turns each into one clear line and a distinct exit status."""

from __future__ import annotations

# Exit statuses follow sysexits.h so systemd's RestartPreventExitStatus= can tell a broken
# configuration (no point restarting) from a transient failure (restart).
EX_USAGE = 64
EX_DATAERR = 65
EX_NOINPUT = 66
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_CANTCREAT = 73
EX_IOERR = 74
EX_TEMPFAIL = 75
EX_CONFIG = 78


class EdgeError(Exception):
    """A failure the user can act on; the message names the thing and what to do."""

    exit_code = EX_SOFTWARE


class ConfigError(EdgeError):
    """Invalid configuration: a key path and what was expected."""

    exit_code = EX_CONFIG


class ModelError(EdgeError):
    """A model file that is missing, corrupt, of the wrong kind, or does not match its manifest."""

    exit_code = EX_DATAERR


class SourceError(EdgeError):
    """A frame source that cannot be opened or has failed for good."""

    exit_code = EX_UNAVAILABLE


class SinkError(EdgeError):
    """A result sink that cannot be opened or written."""

    exit_code = EX_CANTCREAT


class GateError(EdgeError):
    """A converted model that failed the accuracy gate: no model is written."""

    exit_code = EX_DATAERR


class BusyError(EdgeError):
    """A resource another process holds (a second daemon on one state_dir): retrying later can work."""

    # EX_TEMPFAIL, not EX_CONFIG: the configuration is fine and systemd's Restart= should try again
    # (the other holder may be a manual run that ends), unlike a broken config it must not restart.
    exit_code = EX_TEMPFAIL


class UsageError(EdgeError):
    """A command-line option that does not fit what it is used with (found after parsing, e.g.
    against the model): exit 2, as argparse's own usage errors."""

    exit_code = 2
