"""The `mnv1-edge` command: one light module per subcommand, heavy imports only when it runs."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from edge import __version__
from edge.errors import EX_SOFTWARE, EdgeError
from edge.log import under_journald

# name → module in edge.commands; each has HELP, add_arguments(parser) and main(args) -> int.
COMMANDS = ("convert", "eval", "classify", "groups", "capture", "train", "run", "check-config", "doctor", "info", "bench", "fleet")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mnv1-edge",
        description="MobileNet v1 0.25/128 on Raspberry Pi-class cameras: convert the model, classify, run the daemon.",
        epilog="Run `mnv1-edge COMMAND --help` for a command's options. Shared data defaults to ../shared ($MNV1_EDGE_SHARED).",
    )
    parser.add_argument("--version", action="version", version=f"mnv1-edge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"edge.commands.{name.replace('-', '_')}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._module.main(args))
    except EdgeError as exc:
        # Under systemd the "<3>" prefix makes journald file the line at priority err.
        prefix = "<3>" if under_journald() else ""
        print(f"{prefix}mnv1-edge {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except MemoryError:
        print(f"mnv1-edge {args.command}: error: out of memory", file=sys.stderr)
        return EX_SOFTWARE


if __name__ == "__main__":
    sys.exit(main())
