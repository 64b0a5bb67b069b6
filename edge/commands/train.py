"""`mnv1-edge train`: folder-per-class images → a gated, full-integer model of the operator's own classes."""

from __future__ import annotations

import argparse

from edge.commands import bounded_float, int_at_least, non_negative_int
from edge.train import heads

HELP = "train a model of your own classes from DIR/<class>/<images> (needs the convert extra), gated and reported"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", required=True, metavar="DIR", help="one sub-folder of images per class (folder name = class name)")
    p.add_argument("--out", required=True, metavar="MODEL", help="output model; its manifest goes to MODEL.json")
    p.add_argument("--report", metavar="PATH", help="JSON report here, and the confusion matrices beside it as PATH with .png")
    p.add_argument("--source", metavar="PATH|URL", help="the official float model (default: the pinned TensorFlow archive)")
    p.add_argument("--allow-unverified", action="store_true", help="use a --source whose sha256 differs from the pinned one")
    p.add_argument(
        "--crop-fraction",
        type=bounded_float(0, 1, above=True),
        default=1.0,
        metavar="F",
        help="central part of each side kept before resizing to 128 (default 1.0: `capture` frames are already cropped)",
    )
    # Below 1: each class keeps training images (1 held every image out, and training failed after TensorFlow's start-up).
    p.add_argument(
        "--held-out",
        type=bounded_float(0, 1, above=True, below=True),
        default=0.3,
        metavar="F",
        help="share of each class held out for the report (default: %(default)s)",
    )
    p.add_argument(
        "--split",
        choices=("time", "random"),
        default="time",
        help="time (default): hold out each class's latest frames, by capture time (`capture`'s file names, else file times), "
        "as the model will meet later frames; random: by a hash of the file name, for photos of many places",
    )
    p.add_argument(
        "--gap",
        type=bounded_float(0, 0.5, below=True),
        default=0.05,
        metavar="F",
        help="with --split time: share of each class's frames between the training and the held-out ones, used for neither, "
        "so the two do not meet at neighbouring frames (default: %(default)s)",
    )
    p.add_argument(
        "--held-out-images",
        metavar="DIR",
        help="measure on this second folder-per-class set (same class names) and train on all of --images, instead of a split",
    )
    p.add_argument(
        "--head",
        choices=("auto", *heads.NAMES),
        default="auto",
        help="head input (default: cross-validated choice; " + "; ".join(f"{name}, {text}" for name, text in heads.HELP.items()) + ")",
    )
    p.add_argument("--augment-copies", type=non_negative_int, default=3, metavar="N", help="augmented views per image (default: %(default)s)")
    p.add_argument("--no-bias-correction", action="store_true", help="plain per-channel post-training quantization only")
    g = p.add_argument_group("gate (failing writes no model; exit 65)")
    percent = bounded_float(0, 100)
    g.add_argument("--min-accuracy", type=percent, default=90.0, metavar="PCT", help="int8 held-out accuracy floor (default: %(default)s)")
    g.add_argument("--min-agreement", type=percent, default=95.0, metavar="PCT", help="int8 vs float agreement floor (default: %(default)s)")
    g.add_argument(
        "--min-kernel-agreement",
        type=percent,
        default=80.0,
        metavar="PCT",
        help="share of top-1s this CPU's XNNPACK must give as TFLite's reference kernels do (default: %(default)s)",
    )
    g.add_argument(
        "--min-images",
        type=int_at_least(2, "one image to train on and one to hold out"),
        default=10,
        metavar="N",
        help="readable images needed per class (default: %(default)s)",
    )
    g.add_argument(
        "--max-imbalance", type=bounded_float(1, 1e6), default=4.0, metavar="X", help="largest/smallest class ratio allowed (default: %(default)s)"
    )
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
        split=args.split,
        gap=args.gap,
        held_out_images=Path(args.held_out_images) if args.held_out_images else None,
        head=args.head,
        augment=Augment(copies=args.augment_copies),
        limits=Limits(args.min_images, args.max_imbalance, args.allow_imbalance),
        gate=Gate(args.min_accuracy, args.min_agreement, args.min_kernel_agreement),
        bias_correction=not args.no_bias_correction,
    )
    print(train(opts).summary())
    return 0
