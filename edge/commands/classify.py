"""`mnv1-edge classify`: top-k labels for image files."""

from __future__ import annotations

import argparse
import json

from edge.commands import positive_int, thread_count

HELP = "classify image files with a converted model and print the top-k labels"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from edge.paths import default_model

    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, BMP, ...)")
    p.add_argument("--model", default=str(default_model()), help="converted model with its manifest beside it (default: %(default)s)")
    p.add_argument("--top-k", type=positive_int, default=5, help="classes per image (default: %(default)s)")
    p.add_argument("--threads", type=thread_count, default=1, help="interpreter threads (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="one JSON object per image instead of text")


def main(args: argparse.Namespace) -> int:
    from pathlib import Path

    from edge.model.engine import Engine
    from edge.model.preprocess import load_image

    engine = Engine(Path(args.model), threads=args.threads)
    for image in args.images:
        frame = load_image(Path(image), fraction=engine.manifest.crop_fraction)
        preds = engine.top_k(engine.classify(frame), args.top_k)
        if args.json:
            top = [{"class_index": p.class_index, "label": p.label, "score": round(p.score, 6)} for p in preds]
            print(json.dumps({"image": image, "top_k": top}), flush=True)
        else:
            print(image)
            for p in preds:
                print(f"  {p.score:7.4f}  {p.class_index:4d}  {p.label}")
    return 0
