"""Training end to end: checks, load, split, augment, head, quantize, measure, gate, write."""

from __future__ import annotations

import contextlib
import hashlib
import json
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge import __version__
from edge.convert.output import write_model, writing
from edge.errors import GateError
from edge.fsutil import check_writable, write_atomic
from edge.train import dataset, heads, scenes
from edge.train.augment import Augment
from edge.train.heads.base import Fitted, Head, Views
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
    head: str = "auto"  # one of heads.NAMES, or "auto" (cross-validated choice)
    augment: Augment = field(default_factory=Augment)
    limits: dataset.Limits = field(default_factory=dataset.Limits)
    gate: Gate = field(default_factory=Gate)
    bias_correction: bool = True
    # Bias correction fits per-channel means on the calibration images: measured, it lifted int8
    # accuracy by 4-16 points with 200 training images and cost 11 points with 42 (docs/design/train.md).
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
    candidates = _candidates(opts, data.classes)
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
    fitted, l2, cv, calibration = _fit(opts, layers, candidates, data, train_idx)
    chosen = fitted.head

    from edge.train import build

    n = len(data.classes)
    model, reference = build.keras_model(layers, fitted), build.keras_model(layers, fitted, "float64")
    test_frames, test_labels = data.frames[test_idx], data.labels[test_idx]
    float_probs = build.keras_probs(reference, test_frames)
    correctable = opts.bias_correction and chosen.int8.bias_correction
    correct = correctable and len(train_idx) >= opts.min_bias_correction_images
    q = build.quantize(model, reference, calibration, correct, dense_per_tensor=chosen.int8.dense_per_tensor)
    deployed = q.corrected or q.plain
    held = [measure("float", float_probs, test_labels, data.classes)]
    int8, kernels, kernel_problems = build.int8_metrics(
        q, test_frames, data.frames[train_idx], test_labels, data.classes, float_probs, opts.gate.min_kernel_agreement
    )
    held += int8
    problems = opts.gate.failures(held[-1]) + kernel_problems
    report = _report(opts, data, train_idx, test_idx, candidates, chosen, cv, held, problems)
    report.kernels = kernels
    report.head["l2"] = l2
    if loose := len(dataset.image_files(opts.images)):
        report.notes.append(f"{loose} images directly in {opts.images} are in no class folder and were not used")
    report.notes += fitted.notes(data.classes)
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
        provenance = _provenance(opts, source, data, train_idx, chosen.name)
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


def _fit(
    opts: Options, layers: list[Any], candidates: list[Head], data: dataset.Loaded, train_idx: np.ndarray
) -> tuple[Fitted, float, dict[str, float], np.ndarray]:
    """(the fitted head, its L2 strength, every candidate's cross-validated accuracy, the frames
    int8 is calibrated on): all from the training images and their augmented views only."""
    from edge.train import head

    frames, labels = opts.augment.expand(data.frames[train_idx], data.labels[train_idx])
    origin = np.tile(np.arange(len(train_idx)), opts.augment.copies + 1 if opts.augment.copies > 0 else 1)
    training = Views(data.frames[train_idx], data.labels[train_idx], opts.augment, frames)
    inputs = head.training_inputs(layers, candidates, training)
    empty = scenes.empty_class(data.classes)
    originals = np.arange(len(frames)) < len(train_idx)  # expand() puts the unaugmented frames first
    empty_views = None if empty is None else originals & (labels == empty)
    n = len(data.classes)
    chosen, l2, cv = head.choose(inputs, labels, origin, n, candidates, empty=empty_views)
    fitted = chosen.fit(inputs[chosen.name], labels, n, l2, empty_views)
    seen = chosen.calibration(training, inputs[chosen.name])  # evenly spaced below; never held-out frames
    calibration = seen[np.linspace(0, len(seen) - 1, min(len(seen), opts.max_calibration)).astype(np.int64)]
    return fitted, l2, cv, calibration


def _candidates(opts: Options, classes: tuple[str, ...]) -> list[Head]:
    """The heads to fit: --head's, or for `auto` every head the class folders allow."""
    if opts.head == "auto":
        return [h for h in heads.all_heads() if h.needs(classes) is None]
    chosen = heads.get(opts.head)
    if need := chosen.needs(classes):
        raise dataset.DatasetError(f"{opts.images}: --head {opts.head} needs {need}")
    return [chosen]


def _report(
    opts: Options,
    data: dataset.Loaded,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    candidates: list[Head],
    chosen: Head,
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
    margins = ", ".join(f"{h.name} {h.cost_margin:g}" for h in candidates if h.cost_margin)
    auto = "auto: best cross-validated" + (f"; a costlier head only if better by more than its margin, in points: {margins}" if margins else "")
    head_info = {
        "input": chosen.name,
        "chosen_by": auto if opts.head == "auto" else "--head",
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
