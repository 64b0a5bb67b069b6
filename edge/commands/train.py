"""`mnv1-edge train`: folder-per-class images → a gated, full-integer model of the operator's own classes."""

from __future__ import annotations

import argparse

from edge.commands import non_negative_int, positive_int

HELP = "train a model of your own classes from DIR/<class>/<images> (needs the convert extra), gated and reported"


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", required=True, metavar="DIR", help="one sub-folder of images per class (folder name = class name)")
    p.add_argument("--out", required=True, metavar="MODEL", help="output model; its manifest goes to MODEL.json")
    p.add_argument("--report", metavar="PATH", help="JSON report here, and the confusion matrices beside it as PATH with .png")
    p.add_argument("--source", metavar="PATH|URL", help="the official float model (default: the pinned TensorFlow archive)")
    p.add_argument("--allow-unverified", action="store_true", help="use a --source whose sha256 differs from the pinned one")
    p.add_argument(
        "--crop-fraction",
        type=_fraction,
        default=1.0,
        metavar="F",
        help="central part of each side kept before resizing to 128 (default 1.0: `capture` frames are already cropped)",
    )
    p.add_argument("--held-out", type=_fraction, default=0.3, metavar="F", help="share of each class held out for the report (default: %(default)s)")
    p.add_argument(
        "--held-out-images",
        metavar="DIR",
        help="measure on this second folder-per-class set (same class names) and train on all of --images, instead of a split",
    )
    p.add_argument(
        "--head",
        choices=("auto", "features", "probs", "positions", "positions-2x", "scene-2x", "change"),
        default="auto",
        help="head input (default: cross-validated choice; positions-2x, for subjects under 10%% of the width, costs ~4x per frame; "
        "scene-2x, what differs from the empty scene, ~3.5x, needs a class folder named absent, background, empty, none or nothing; "
        "change, whether the pixels differ from the empty scene at all once it is moved onto the frame, ~3-5x, needs that and one other class)",
    )
    p.add_argument("--augment-copies", type=non_negative_int, default=3, metavar="N", help="augmented views per image (default: %(default)s)")
    p.add_argument("--no-bias-correction", action="store_true", help="plain per-channel post-training quantization only")
    g = p.add_argument_group("gate (failing writes no model; exit 65)")
    g.add_argument("--min-accuracy", type=float, default=90.0, metavar="PCT", help="int8 held-out accuracy floor (default: %(default)s)")
    g.add_argument("--min-agreement", type=float, default=95.0, metavar="PCT", help="int8 vs float agreement floor (default: %(default)s)")
    g.add_argument(
        "--min-kernel-agreement",
        type=float,
        default=80.0,
        metavar="PCT",
        help="share of top-1s this CPU's XNNPACK must give as TFLite's reference kernels do (default: %(default)s)",
    )
    g.add_argument("--min-images", type=positive_int, default=10, metavar="N", help="readable images needed per class (default: %(default)s)")
    g.add_argument("--max-imbalance", type=float, default=4.0, metavar="X", help="largest/smallest class ratio allowed (default: %(default)s)")
    g.add_argument("--allow-imbalance", action="store_true", help="the classes are imbalanced on purpose")


def main(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from edge.train.augment import Augment
    from edge.train.dataset import Limits
    from edge.train.report import Gate
    from edge.train.run import Options, train

    opts = Options(
        images=Path(args.images),
        out=Path(args.out),
        report=Path(args.report) if args.report else None,
        source=args.source,
        allow_unverified=args.allow_unverified,
        crop_fraction=args.crop_fraction,
        held_out=args.held_out,
        held_out_images=Path(args.held_out_images) if args.held_out_images else None,
        head=args.head,
        augment=Augment(copies=args.augment_copies),
        limits=Limits(args.min_images, args.max_imbalance, args.allow_imbalance),
        gate=Gate(args.min_accuracy, args.min_agreement, args.min_kernel_agreement),
        bias_correction=not args.no_bias_correction,
    )
    print(train(opts).summary())
    return 0
