"""`python -m benchmarks.footage {fetch,prepare,run,pin}`: the real-footage benchmark (docs/design/footage-benchmark.md)."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.footage import sources

if TYPE_CHECKING:
    from benchmarks.footage.prepare import Prepared


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.footage", description=__doc__)
    parser.add_argument("--manifest", type=Path, default=sources.MANIFEST, help="scenes and pins (default: the benchmark's scenes.json)")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--work", type=Path, required=True, help="cache: verified footage, prepared cases, models, results")
        p.add_argument("--cases", nargs="+", metavar="CASE", help="cases to use (default: all; `prepare --list` names them)")

    def copies(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--from", dest="copies", type=Path, action="append", default=[], metavar="DIR",
            help="take the files from a local copy instead of downloading: a clone, an extracted archive or a bare git directory "
            "of each repository, as DIR/<owner>+<name>, DIR/<name> or DIR itself (checked against the same sha256s); repeatable",
        )  # fmt: skip
        p.add_argument("--base-url", help=f"download from this mirror of raw.githubusercontent.com (or ${sources.URL_ENV})")

    p = sub.add_parser("fetch", help="download (or copy with --from) the pinned footage and verify every file")
    common(p)
    copies(p)
    p = sub.add_parser("prepare", help="fetch, then cut, label and split each case (train/<class>/ folders as `capture` names them)")
    common(p)
    copies(p)
    p.add_argument("--list", action="store_true", help="only list the cases")
    p = sub.add_parser("run", help="fetch, prepare, train every head through `python -m edge train`, measure on the later frames, print the table")
    common(p)
    copies(p)
    p.add_argument("--heads", nargs="+", metavar="HEAD", help="train --head values, 'auto' for train's own choice (default: every head and auto)")
    p.add_argument("--train-args", default="", metavar="ARGS", help="more `train` arguments, one shell-quoted string (e.g. '--augment-copies 2')")
    p.add_argument("--jobs", type=int, choices=(1, 2), default=1, help="trainings at once (default 1; 2 cores in all)")
    p.add_argument("--source", help="the official float model for train --source (default: ../shared's when present, else train's download)")
    p.add_argument("--nice", type=int, default=10, help="niceness for this run and its trainings (default: %(default)s)")
    p.add_argument("--out", type=Path, help="also write the table and the case lines to this markdown file")
    p = sub.add_parser("pin", help="(maintainers) write sums/<repo>.sha256 from a git directory of the repository at the pinned commit")
    p.add_argument("--from", dest="copy", type=Path, required=True, metavar="DIR", help="a clone or bare git directory, or a folder holding them")
    p.add_argument("--source", dest="key", help="only this source (default: all)")
    args = parser.parse_args(argv)
    try:
        return _dispatch(args)
    except sources.FootageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 65


def _dispatch(args: argparse.Namespace) -> int:
    manifest = sources.load(args.manifest)
    if args.command == "pin":
        for key, source in manifest.sources.items():
            if args.key in (None, key):
                n = sources.pin(source, list(manifest.scenes.values()), args.copy)
                print(f"{source.sums}: {n} files of {source.repo}@{source.commit[:12]}")
        return 0
    unknown = [c for c in args.cases or [] if c not in manifest.cases]
    if unknown:
        raise sources.FootageError(f"--cases: no case {', '.join(unknown)}; the cases are {', '.join(manifest.cases)}")
    cases = [manifest.cases[c] for c in args.cases or manifest.cases]
    if args.command == "prepare" and args.list:
        for case in manifest.cases.values():
            print(f"{case.name}: {case.title}")
        return 0
    start = time.perf_counter()
    if args.command == "run":
        os.nice(args.nice)  # inherited by every training subprocess
    fetched = sources.fetch(args.work, list({c.scene.name: c.scene for c in cases}.values()), args.copies, args.base_url)
    print(f"footage: {fetched} files fetched, all verified", file=sys.stderr, flush=True)
    if args.command == "fetch":
        return 0
    from benchmarks.footage.prepare import prepare

    prepared = [(case, prepare(args.work, case)) for case in cases]
    if args.command == "prepare":
        from benchmarks.footage.run import describe

        for case, prep in prepared:
            print(describe(case, prep))
        return 0
    return _run(args, prepared, start)


def _run(args: argparse.Namespace, prepared: list[tuple[sources.Case, Prepared]], start: float) -> int:
    from benchmarks.footage import run

    heads = tuple(args.heads) if args.heads else run.HEADS
    jobs = [run.Job(case, head) for case, _ in prepared for head in heads]
    source = args.source or _shared_float_model()
    trained = run.train_all(args.work, jobs, shlex.split(args.train_args), args.jobs, source)
    results = run.measure_all(args.work, jobs, trained)
    text = run.table(prepared, heads, trained, results)
    text += "\n" + "\n".join(run.verdict(case, heads, trained, results) for case, _ in prepared) + "\n"
    text += "\n" + "\n".join(run.describe(case, prep) for case, prep in prepared) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    print(f"wall time {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return 0


def _shared_float_model() -> str | None:
    from edge import paths

    model = paths.float_model()
    return str(model) if model.is_file() else None


if __name__ == "__main__":
    sys.exit(main())
