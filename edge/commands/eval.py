"""`mnv1-edge eval`: top-1/top-5, agreement and interleaved latency for any models on a labelled folder."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from edge.commands import non_negative_int, thread_count
from edge.commands.classify import builtin_groups

if TYPE_CHECKING:
    from edge.model.groups import Group

HELP = "measure top-1/top-5, agreement with the first model and interleaved invoke latency on a labelled image folder"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("models", nargs="+", metavar="MODEL", help=".tflite models (float or uint8/int8 input); agreement is against the first")
    p.add_argument("--images", required=True, metavar="DIR", help="image folder with labels.csv (file,synset,class_index,class_name)")
    p.add_argument(
        "--split",
        choices=("all", "calibration", "held-out"),
        default="all",
        help="all images, or the converter's calibration (even labels.csv rows) / held-out (odd rows) half (default: %(default)s)",
    )
    p.add_argument("--threads", type=thread_count, default=1, help="interpreter threads (default: %(default)s)")
    p.add_argument(
        "--kernels",
        choices=("xnnpack", "builtin", "reference"),
        default="xnnpack",
        help="run the models on XNNPACK (the device path), TFLite's optimized built-in kernels (the legacy tflite-runtime's) "
        "or its reference kernels (what the converter's and train's gates measure: the same on every CPU) (default: %(default)s)",
    )
    p.add_argument(
        "--rounds", type=non_negative_int, default=300, metavar="N", help="interleaved invokes per model for latency, 0 = skip (default: %(default)s)"
    )
    p.add_argument("--json", metavar="PATH", help="also write the evaluation as JSON ('-' = stdout instead of the table)")
    p.add_argument(
        "--groups",
        action="append",
        type=builtin_groups,
        default=[],
        metavar="NAME,...",
        help="also report N-way accuracy (these label groups + other) and each group's precision and recall; repeat for more sets",
    )


def main(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    import numpy as np

    from edge.convert.dataset import load_labelled
    from edge.convert.evaluate import evaluate
    from edge.convert.groupeval import group_accuracy, summary
    from edge.errors import ModelError, SinkError
    from edge.fsutil import check_writable, write_atomic

    group_sets = [group_names(names) for names in args.groups]
    json_path = Path(args.json) if args.json and args.json != "-" else None
    if json_path is not None:
        check_writable(json_path, "the evaluation JSON")  # before minutes of evaluation, not after
    for model in args.models:
        if not Path(model).is_file():
            raise ModelError(f"{model}: model file not found")
    folder = Path(args.images)
    _, frames, labels = load_labelled(folder, args.split)
    models: list[tuple[str, Path | bytes]] = [(m, Path(m)) for m in args.models]
    where = f"{folder} ({args.split})" + ("" if args.kernels == "xnnpack" else f", TFLite's {args.kernels} kernels")
    evaluation, probs = evaluate(models, frames, labels, where, args.threads, args.rounds, kernels={m: args.kernels for m in args.models})
    group_results = [[group_accuracy(m, probs[m], np.asarray(labels), groups) for m in args.models] for groups in group_sets]
    data = evaluation.to_dict()
    if group_results:
        data["groups"] = [[r.to_dict() for r in results] for results in group_results]
    text = json.dumps(data, indent=1, sort_keys=True) + "\n"
    if args.json == "-":
        print(text, end="")
        return 0
    if json_path is not None:
        try:
            write_atomic(json_path, text.encode())
        except OSError as exc:
            raise SinkError(f"{json_path}: cannot write ({exc.strerror or exc})") from exc
    print(evaluation.summary())
    for results in group_results:
        print(summary(results))
    return 0


def group_names(names: tuple[str, ...]) -> tuple[Group, ...]:
    """Built-in groups (checked by --groups' type), resolved for the 1001 ImageNet classes."""
    from edge.model.groups import NUM_CLASSES, configured

    return configured({}, names, NUM_CLASSES, names_key="--groups")
