"""`mnv1-edge doctor`: check the installation (Python, camera, runtime, model, config, files, broker, board) and say how to fix it."""

from __future__ import annotations

import argparse

HELP = (
    "check the installation: each item OK, WARN, FAIL or SKIP with the fix; "
    "exits 0 without a FAIL, 78 (EX_CONFIG) when the config does not load, else 69 (EX_UNAVAILABLE)"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from edge.config import DEFAULT_PATH

    p.add_argument("--config", default=str(DEFAULT_PATH), help="config file (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print a JSON list of {check, status, detail, fix}")
    p.add_argument(
        "--user",
        help="check directories as writable by this user (default: mnv1-edge when it exists, else the current user); "
        "as root it is tested as that user with runuser, else from owner, group and mode bits",
    )


def main(args: argparse.Namespace) -> int:
    import json
    import logging
    from pathlib import Path

    from edge.doctor import exit_status, run_all
    from edge.doctor.files import default_user

    # The checks reuse the daemon's code, whose warnings would interleave with the report.
    logging.disable(logging.WARNING)
    checks = run_all(Path(args.config), args.user or default_user())
    if args.json:
        print(json.dumps([c.as_dict() for c in checks], indent=2, ensure_ascii=False))
    else:
        for c in checks:
            print(f"{c.status:<5} {c.check:<10} {c.detail}")
            if c.fix:
                print(f"{'':<16} fix: {c.fix}")
        counts = {s: sum(c.status == s for c in checks) for s in ("OK", "WARN", "FAIL", "SKIP")}
        print(f"doctor: {', '.join(f'{n} {s}' for s, n in counts.items())}")
    return exit_status(checks)
