"""`mnv1-edge classify`: top-k labels (and label group scores) for image files."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from edge.commands import MODEL_HELP, default_model, positive_int, thread_count

if TYPE_CHECKING:
    from edge.model.engine import Engine
    from edge.model.groups import GroupScorer

HELP = "classify image files with a converted model and print the top-k labels"


def roi_arg(text: str) -> tuple[float, float, float, float]:
    """argparse type for --roi x,y,w,h."""
    from edge.model.region import parse_roi

    try:
        return parse_roi(text, "--roi")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--roi: ")) from exc


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, BMP, ...)")
    p.add_argument("--model", help=MODEL_HELP)
    p.add_argument("--top-k", type=positive_int, default=5, help="classes per image (default: %(default)s)")
    p.add_argument("--threads", type=thread_count, default=1, help="interpreter threads (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="one JSON object per image instead of text")
    p.add_argument(
        "--groups",
        nargs="?",
        const=(),
        type=builtin_groups,
        metavar="NAME,...",
        help="also score these built-in label groups (+ other); without names, every built-in group",
    )
    p.add_argument("--roi", type=roi_arg, metavar="X,Y,W,H", help="classify only this region: fractions of the image, as source.roi")


def main(args: argparse.Namespace) -> int:
    """Each image in turn; one that cannot be read is one error line and the rest are still
    classified; the exit status is then the first failure's."""
    import sys
    from pathlib import Path

    from edge.errors import EdgeError
    from edge.log import setup
    from edge.model.engine import Engine
    from edge.model.preprocess import load_image
    from edge.model.region import FULL, Crop

    setup("warning")  # the decoder's warnings (an upscaled region, Pillow's bomb warning) as log lines
    engine = Engine(Path(args.model or default_model()), threads=args.threads)
    scorer = make_scorer(args.groups, engine) if args.groups is not None else None
    status = 0
    for image in args.images:
        try:
            frame = load_image(Path(image), Crop(args.roi or FULL, engine.manifest.crop_fraction), warn_upscaled=True)
        except EdgeError as exc:
            print(f"mnv1-edge classify: error: {exc}", file=sys.stderr, flush=True)
            status = status or exc.exit_code
            continue
        out = classify(engine, frame, args.top_k, scorer)
        if args.json:
            print(json.dumps({"image": image, **out}), flush=True)
        else:
            print(image)
            for p in out["top_k"]:
                print(f"  {p['score']:7.4f}  {p['class_index']:4d}  {p['label']}")
            for g in out.get("groups", []):
                print(f"  {g['score']:7.4f}  group {g['name']}")
    return status


def classify(engine: Engine, frame: Any, k: int, scorer: GroupScorer | None) -> dict[str, Any]:
    """top_k, and with groups their scores best first and the top one as `answer`."""
    scores = engine.classify(frame)
    out: dict[str, Any] = {"top_k": [{"class_index": p.class_index, "label": p.label, "score": round(p.score, 6)} for p in engine.top_k(scores, k)]}
    if scorer is not None:
        sums = scorer.scores(scores)
        ranked = sorted(zip(scorer.names, sums.tolist(), strict=True), key=lambda g: -g[1])  # stable: configured order on ties
        out["answer"] = ranked[0][0]
        out["groups"] = [{"name": name, "score": round(score, 6)} for name, score in ranked]
    return out


def builtin_groups(text: str) -> tuple[str, ...]:
    """argparse type for --groups NAME,...: built-in group names (this command reads no [groups] table)."""
    from edge.model.groups import builtin_specs

    names = tuple(n.strip() for n in text.split(",") if n.strip())
    known = builtin_specs()
    unknown = [n for n in names if n not in known]
    if not names:
        raise argparse.ArgumentTypeError(f"expected built-in group names separated by commas ({', '.join(sorted(known))}), got {text!r}")
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown group {unknown[0]!r} in {text!r}; the built-in groups are {', '.join(sorted(known))}")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"a group is named twice in {text!r}")
    return names


def make_scorer(names: tuple[str, ...], engine: Engine) -> GroupScorer:
    """Every built-in group when `names` is empty; the built-in groups name ImageNet's classes."""
    from edge.errors import UsageError
    from edge.model.groups import NUM_CLASSES, GroupScorer, builtin_specs, configured

    num_classes = len(engine.labels)
    if num_classes != NUM_CLASSES:
        raise UsageError(
            f"--groups: the built-in groups name classes of the {NUM_CLASSES}-class ImageNet model; "
            f"{engine.model_path} has {num_classes} classes of its own (its answers are those classes)"
        )
    return GroupScorer(configured({}, names or tuple(builtin_specs()), num_classes, names_key="--groups"), num_classes)
