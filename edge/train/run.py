"""Training end to end: checks, load, split, augment, head, quantize, measure, gate, write."""

from __future__ import annotations

import contextlib
import hashlib
import json
import resource
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edge import __version__
from edge.convert.output import write_model, writing
from edge.errors import GateError
from edge.fsutil import check_writable, write_atomic
from edge.train import change, dataset, scene
from edge.train.augment import Augment
from edge.train.report import Gate, Metrics, TrainReport, confusion_png, measure

CAPTURE_INFO = "capture.json"  # written by `mnv1-edge capture`: how the frames were made


@dataclass(frozen=True)
class Options:
    images: Path
    out: Path
    report: Path | None = None
    source: str | None = None  # the official float model (path or URL); default: the pinned archive
    allow_unverified: bool = False
    crop_fraction: float = 1.0  # captured frames are already what the model sees
    held_out: float = 0.3
    held_out_images: Path | None = None  # a second folder-per-class set to measure on, instead of a split
    head: str = "auto"  # one of head.INPUTS, or "auto" (cross-validated choice)
    augment: Augment = field(default_factory=Augment)
    limits: dataset.Limits = field(default_factory=dataset.Limits)
    gate: Gate = field(default_factory=Gate)
    bias_correction: bool = True
    # Bias correction fits per-channel means on the calibration images: measured, it lifted int8
    # accuracy by 4-16 points with 200 training images and cost 11 points with 42 (docs/train.md).
    min_bias_correction_images: int = 100
    max_calibration: int = 300


def confusion_path(report: Path) -> Path:
    return report.with_suffix(".png")


def train(opts: Options) -> TrainReport:
    # Longer than most functions here: it is the one straight story of a training run, step by
    # step; each step is a call into its own module.
    start = time.perf_counter()
    check_writable(opts.out, "the model")
    if opts.report:
        check_writable(opts.report, "the report")
    data = dataset.load(opts.images, opts.limits, opts.crop_fraction)  # bad input fails here, before TensorFlow
    empty = scene.empty_class(data.classes)
    if opts.head in ("scene-2x", "change") and not _candidate(opts.head, empty, len(data.classes)):
        need = "one class folder named" if opts.head == "scene-2x" else "exactly two class folders, one named"
        names = "/".join(scene.EMPTY_NAMES)
        raise dataset.DatasetError(f"{opts.images}: --head {opts.head} needs {need} {names} (frames of the scene alone)")
    from edge.convert import rebuild
    from edge.convert.quantize import quiet
    from edge.convert.source import resolve

    with quiet():  # TensorFlow's start-up prints CUDA probing and oneDNN notices on fds 1/2
        import keras  # noqa: F401

    source = resolve(opts.source, opts.allow_unverified)
    layers = rebuild.read_layers(source.data, source.origin)
    if opts.held_out_images is not None:
        data, train_idx, test_idx = dataset.with_held_out(data, opts.held_out_images, opts.crop_fraction)
    else:
        train_idx, test_idx = dataset.split(data.paths, data.labels, opts.held_out)
    frames, labels = opts.augment.expand(data.frames[train_idx], data.labels[train_idx])
    origin = np.tile(np.arange(len(train_idx)), opts.augment.copies + 1 if opts.augment.copies > 0 else 1)

    from edge.train import build, head

    n = len(data.classes)
    kinds = (opts.head,) if opts.head != "auto" else tuple(k for k in head.INPUTS if _candidate(k, empty, n))
    # Training views only: nothing held out is needed to fit.
    inputs = head.backbone_outputs(layers, frames, tuple(k for k in kinds if k != "change"))
    if "change" in kinds:
        # Pixel differences from the empty scene: the frames and noisy copies only. The head undoes
        # a move of about a pixel itself; the random crops move up to 6 % (8 px), which is the view
        # check's to report. Brightness and contrast drop out of the standardised frame but for the
        # pixels a x1.25 gain clips, which no real frame of that scene clips: measured, they raised
        # the absent views' scores into the small subjects' (docs/train.md).
        still = replace(opts.augment, max_shift=0.0, brightness=0.0, contrast=0.0)
        inputs["change"] = still.expand(data.frames[train_idx], data.labels[train_idx])[0]
    originals = np.arange(len(frames)) < len(train_idx)  # expand() puts the unaugmented frames first
    empty_views = None if empty is None else originals & (labels == empty)
    kind, l2, cv = head.choose(inputs, labels, origin, n, kinds, empty=empty_views)
    fitted = head.fit(kind, inputs[kind], labels, n, l2, empty=empty_views)
    # Calibrate on the training views the head was fitted on (augmented ones too: the light and
    # noise the device will see), evenly spaced; never on held-out frames. The change head's views
    # also include its frames slid by up to a pixel: int8 must leave its move terms that range.
    seen = np.concatenate([inputs["change"], change.moved(data.frames[train_idx])]) if kind == "change" else frames
    calibration = seen[np.linspace(0, len(seen) - 1, min(len(seen), opts.max_calibration)).astype(np.int64)]
    del inputs

    model, reference = build.keras_model(layers, fitted), build.keras_model(layers, fitted, "float64")
    test_frames, test_labels = data.frames[test_idx], data.labels[test_idx]
    float_probs = build.keras_probs(reference, test_frames)
    correctable = opts.bias_correction and kind != "change"  # the change head's convolutions are fixed copies and sums
    correct = correctable and len(train_idx) >= opts.min_bias_correction_images
    q = build.quantize(model, reference, calibration, correct, dense_per_tensor=kind == "change")
    deployed = q.corrected or q.plain
    held = [measure("float", float_probs, test_labels, data.classes)]
    int8, kernels, kernel_problems = build.int8_metrics(
        q, test_frames, data.frames[train_idx], test_labels, data.classes, float_probs, opts.gate.min_kernel_agreement
    )
    held += int8
    problems = opts.gate.failures(held[-1]) + kernel_problems
    report = _report(opts, data, train_idx, test_idx, kind, cv, held, problems)
    report.kernels = kernels
    report.head["l2"] = l2
    if loose := len(dataset.image_files(opts.images)):
        report.notes.append(f"{loose} images directly in {opts.images} are in no class folder and were not used")
    if (upscale := head.upscale_of(kind)) > 1:
        report.notes.append(
            f"{kind}: the 128x128 input is enlarged {upscale}x inside the model, for small subjects: {head.ARM_COST[kind]} the stock "
            "model's instructions per frame on a Pi's cores (docs/train.md); --head positions keeps the cost of the stock model"
        )
    if fitted.offsets is not None and empty is not None:
        report.notes.append(
            f"{kind}: scores what differs from {len(fitted.offsets)} prototypes of the class {data.classes[empty]!r} "
            "(the empty scene); if the camera is moved or the scene changes for good, capture and train again"
        )
    if fitted.prototypes is not None and empty is not None:
        report.notes.append(
            f"change: says {data.classes[1 - empty]!r} when the frame's pixels differ from all {len(fitted.prototypes)} prototypes of "
            f"{data.classes[empty]!r} somewhere: anything the empty frames do not show (a person, a shadow, a moved chair) counts; "
            f"capture {data.classes[empty]!r} frames of all that happens without the subject; a camera moved by more than about a "
            "pixel makes every frame count (the daemon's view check reports it); "
            f"{head.ARM_COST['change']} the stock model's instructions per frame (15.9x with the legacy tflite-runtime: docs/train.md)"
        )
    from edge.train import view

    views = view.references(data.frames[train_idx], data.frames[test_idx])
    if views is not None:
        report.notes.append(
            "the frames show one fixed view: the manifest carries it, and the daemon warns when the camera's view moves (source.view_check_s)"
        )
    if correctable and not correct:
        report.notes.append(f"no bias correction: {len(train_idx)} training images < {opts.min_bias_correction_images} (it overfits small sets)")
    if data.skipped:
        report.notes.append(f"{len(data.skipped)} unreadable images skipped, e.g. {data.skipped[0]}")
    if not problems:
        provenance = _provenance(opts, source, data, train_idx, kind)
        write_model(opts.out, deployed, data.classes, [data.paths[i] for i in test_idx], provenance, opts.crop_fraction, views)
        report.model = {
            "path": str(opts.out),
            "bytes": len(deployed),
            "sha256": hashlib.sha256(deployed).hexdigest(),
            "input": "uint8 1x128x128x3 raw RGB",
            "output": f"uint8 1x{n} probabilities",
            "cpu_ops": q.cpu_ops,
        }
    report.cost = {
        "total_s": round(time.perf_counter() - start, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    _write_report(opts, report, held)
    if problems:
        raise GateError(f"{opts.out}: gate failed: {'; '.join(problems)}; no model written")
    return report


def _candidate(kind: str, empty: int | None, classes: int) -> bool:
    """Whether `auto` tries the head input `kind`: the scene heads need an empty class, and the change head answers one yes/no question."""
    if kind == "scene-2x":
        return empty is not None
    if kind == "change":
        return empty is not None and classes == 2
    return True


def _report(
    opts: Options,
    data: dataset.Loaded,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    kind: str,
    cv: dict[str, float],
    held: list[Metrics],
    problems: list[str],
) -> TrainReport:
    per_class = {
        c: {"train": int(np.sum(data.labels[train_idx] == i)), "held_out": int(np.sum(data.labels[test_idx] == i))}
        for i, c in enumerate(data.classes)
    }
    images = {
        "folder": str(opts.images),
        "train": len(train_idx),
        "held_out": len(test_idx),
        "per_class": per_class,
        "split": f"per class, images ordered by sha256 of the file name, the first {opts.held_out:.0%} held out"
        if opts.held_out_images is None
        else f"all for training; held out: {opts.held_out_images}",
        "crop_fraction": opts.crop_fraction,
        "skipped": list(data.skipped),
    }
    chosen = "auto: best cross-validated (the 2x heads only if more than 1 point better)" if opts.head == "auto" else "--head"
    head_info = {
        "input": kind,
        "chosen_by": chosen,
        "cv_accuracy": cv,
        "cv": "4 folds of the training images (augmented views stay with their image)",
    }
    gate = {"passed": not problems, "problems": problems, **asdict(opts.gate)}
    return TrainReport(list(data.classes), images, head_info, opts.augment.describe(), held, gate)


def _provenance(opts: Options, source: Any, data: dataset.Loaded, train_idx: np.ndarray, kind: str) -> dict[str, Any]:
    import tensorflow as tf

    h = hashlib.sha256()
    for i in train_idx:
        h.update(str(data.paths[i].relative_to(opts.images)).encode("utf-8", "surrogateescape") + b"\0")
        h.update(hashlib.sha256(data.paths[i].read_bytes()).digest())
    info: dict[str, Any] = {
        "kind": "custom classes (mnv1-edge train)",
        "source": source.origin,
        "source_sha256": source.sha256,
        "source_verified": source.verified,
        "training_digest": h.hexdigest(),
        "head_input": kind,
        "converter_version": __version__,
        "tensorflow_version": tf.__version__,
        "crop": f"trained on the central {opts.crop_fraction:g} of each side of the images, resized to 128x128",
    }
    capture = opts.images / CAPTURE_INFO
    if capture.is_file():
        with contextlib.suppress(OSError, ValueError):
            info["captured_with"] = json.loads(capture.read_text(encoding="utf-8"))
    return info


def _write_report(opts: Options, report: TrainReport, held: list[Metrics]) -> None:
    if not opts.report:
        return
    with writing(opts.report):
        write_atomic(opts.report, report.to_json().encode())
        write_atomic(confusion_path(opts.report), confusion_png([held[0], held[-1]], report.classes))
