"""`mnv1-edge info`: runtime, delegate and model facts, as text or JSON."""

from __future__ import annotations

import argparse
import json

from edge.commands import MODEL_HELP, default_model

HELP = "show the TFLite runtime, the XNNPACK delegation and the model's facts"


def add_arguments(p: argparse.ArgumentParser) -> None:
    which = p.add_mutually_exclusive_group()
    which.add_argument("--model", help=MODEL_HELP)
    which.add_argument("--config", help="take the model path, threads and sha256 pin from this config file instead of --model")
    p.add_argument("--json", action="store_true", help="print JSON")


def main(args: argparse.Namespace) -> int:
    from pathlib import Path

    from edge.model.engine import Engine

    if args.config:
        from edge.config import load

        cfg = load(Path(args.config))
        model, threads, pin = Path(cfg.model.path), cfg.model.threads, cfg.model.sha256
    else:
        model, threads, pin = Path(args.model or default_model()), 1, ""
    engine = Engine(model, threads=threads, expected_sha256=pin)
    facts = engine.describe()
    facts["self_test"] = f"ok ({engine.manifest.self_test.label if engine.manifest.self_test else '-'})"
    facts["provenance"] = engine.manifest.provenance
    if args.json:
        print(json.dumps(facts, indent=2))
    else:
        for key, value in facts.items():
            print(f"{key:16} {value}")
    return 0
