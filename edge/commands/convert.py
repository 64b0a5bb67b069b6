"""`mnv1-edge convert`: the official float model → full-integer uint8-in/uint8-out TFLite, gated and reported."""

from __future__ import annotations

import argparse

from edge.commands import bounded_float, non_negative_int, positive_int

HELP = "convert the official float MobileNet v1 0.25/128 into the int8 model the device runs (with report and accuracy gate)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", metavar="PATH|URL", help="float .tflite (or its .tgz) path or URL (default: the pinned TensorFlow archive URL)")
    p.add_argument("--calibration", metavar="DIR", help="calibration image folder (default: ../shared/data/imagenet-dev)")
    p.add_argument("--calibration-count", type=positive_int, default=250, metavar="N", help="calibration images (default: %(default)s)")
    measure = p.add_mutually_exclusive_group()  # a labelled folder to gate on, or an explicit "none"
    measure.add_argument(
        "--eval-images",
        metavar="DIR",
        help="labelled folder (labels.csv) for the report and gate (default: the images of the calibration folder it does not calibrate on)",
    )
    measure.add_argument(
        "--no-gate",
        action="store_true",
        help="no labelled images at hand: convert without measuring the model (no evaluation, no gate; said in the output, report and manifest)",
    )
    p.add_argument("--out", metavar="PATH", help="output model; its manifest goes to PATH.json (default: models/mobilenet_v1_0.25_128_int8.tflite)")
    p.add_argument("--report", metavar="PATH", help="write the JSON report here")
    p.add_argument("--labels", metavar="PATH", help="1001 labels, line N = class N (default: ../shared/models/imagenet_labels.txt)")
    p.add_argument("--allow-unverified", action="store_true", help="convert a --source whose sha256 differs from the pinned one")
    p.add_argument("--no-bias-correction", action="store_true", help="plain per-channel post-training quantization only")
    g = p.add_argument_group("accuracy gate (on the held-out images; failing writes no model)")
    percent = bounded_float(0, 100)
    g.add_argument("--min-agreement", type=percent, default=80.0, metavar="PCT", help="min %% of top-1s equal to the float's (default: %(default)s)")
    g.add_argument("--max-top1-drop", type=percent, default=1.5, metavar="POINTS", help="max top-1 points below float (default: %(default)s)")
    g.add_argument(
        "--min-top1-vs-reference",
        type=bounded_float(-100, 100),
        default=-1.0,
        metavar="POINTS",
        help="min top-1 points relative to Google's quant model, negative = may be below (default: %(default)s)",
    )
    g.add_argument(
        "--min-kernel-agreement",
        type=percent,
        default=80.0,
        metavar="PCT",
        help="min %% of top-1s this CPU's XNNPACK gives as TFLite's reference kernels do (default: %(default)s)",
    )
    p.add_argument(
        "--latency-rounds",
        type=non_negative_int,
        default=300,
        metavar="N",
        help="interleaved invokes per model for the latency table, 0 = skip (default: %(default)s)",
    )


def main(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    # TensorFlow's C++ start-up chatter (CUDA probing, CPU features) is noise for this command.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from edge import paths
    from edge.convert.report import Gate
    from edge.convert.run import Options, convert

    opts = Options(
        out=Path(args.out) if args.out else paths.default_model(),
        source=args.source,
        calibration=Path(args.calibration) if args.calibration else paths.dev_images(),
        calibration_count=args.calibration_count,
        eval_images=Path(args.eval_images) if args.eval_images else None,
        report=Path(args.report) if args.report else None,
        labels=Path(args.labels) if args.labels else paths.labels_file(),
        allow_unverified=args.allow_unverified,
        bias_correction=not args.no_bias_correction,
        gate=None if args.no_gate else Gate(args.min_agreement, args.max_top1_drop, args.min_top1_vs_reference, args.min_kernel_agreement),
        latency_rounds=args.latency_rounds,
    )
    report = convert(opts)
    print(report.summary())
    return 0
