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
from edge.train import conditions, dataset, head, heads, scenes
from edge.train.augment import Augment
from edge.train.heads.base import Fitted, Head, Views
from edge.train.report import Gate, Metrics, TrainReport, measure, mistakes, report_png, shown

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
    split: str = "time"  # "time": each class's latest frames held out (dataset.split_in_time); "random": by a hash of the name
    gap: float = 0.05  # in time: the share of each class's frames between training and held-out frames, used for neither
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
        data, split = dataset.with_held_out(data, opts.held_out_images, opts.crop_fraction)
    elif opts.split == "random":
        split = dataset.split_at_random(data, opts.held_out)
    else:
        split = dataset.split_in_time(data, opts.held_out, opts.gap)
    train_idx, test_idx = split.train, split.held_out
    cover = conditions.coverage(data.frames, data.labels, data.classes, train_idx, test_idx)
    visits = dataset.visits(data, train_idx) if split.in_time else {}
    fitted, choice, calibration = _fit(opts, layers, candidates, data, split, cover["narrow"], visits)
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
    int8, int8_probs, kernels, kernel_problems = build.int8_metrics(
        q, test_frames, data.frames[train_idx], test_labels, data.classes, float_probs, opts.gate.min_kernel_agreement
    )
    held += int8
    problems = opts.gate.failures(held[-1]) + kernel_problems
    report = _report(opts, data, split, candidates, choice, held, problems)
    report.kernels = kernels
    _report_coverage(report, cover, visits, choice, deployed, data.frames[train_idx], data.labels[train_idx], data.classes)
    report.mistakes = mistakes(int8_probs, test_labels, data.classes, [data.paths[i] for i in test_idx], data.times[test_idx])
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
        light = (cover["brightness_train"][0], cover["brightness_train"][1])  # the daemon's light check compares frames with it
        write_model(opts.out, deployed, data.classes, [data.paths[i] for i in test_idx], provenance, opts.crop_fraction, views, light)
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
    _write_report(opts, report, held, data, test_idx)
    if problems:
        raise GateError(f"{opts.out}: gate failed: {'; '.join(problems)}; no model written")
    return report


FOLDS = 4


def _fit(
    opts: Options, layers: list[Any], candidates: list[Head], data: dataset.Loaded, split: dataset.Split, probe: bool, visits: dict[str, int]
) -> tuple[Fitted, head.Choice, np.ndarray]:
    """(the fitted head, how it was chosen, the frames int8 is calibrated on): all from the training
    images and their augmented views only. Cross-validation folds are stretches of time (the split's
    folds); with `probe` (the training frames span one light), each head is also asked about the
    training images dimmed (conditions.dimmed); with few `visits` per class, without cost margins."""
    train_idx = split.train
    frames, labels = opts.augment.expand(data.frames[train_idx], data.labels[train_idx])
    image_fold = split.folds(data, FOLDS)
    fold = np.tile(image_fold, len(frames) // len(train_idx))  # expand() repeats the images in order: views keep their image's fold
    training = Views(data.frames[train_idx], data.labels[train_idx], opts.augment, frames)
    inputs = head.training_inputs(layers, candidates, training)
    empty = scenes.empty_class(data.classes)
    originals = np.arange(len(frames)) < len(train_idx)  # expand() puts the unaugmented frames first
    empty_views = None if empty is None else originals & (labels == empty)
    n = len(data.classes)
    light = None
    if probe:
        dim = conditions.dimmed(data.frames[train_idx])
        still = Views(dim, data.labels[train_idx], Augment(copies=0), dim)
        light = head.Probe(head.training_inputs(layers, candidates, still), data.labels[train_idx], image_fold)
    margins = not conditions.few_visits(visits)
    choice = head.choose(inputs, labels, fold, n, candidates, empty=empty_views, probe=light, margins=margins)
    fitted = choice.head.fit(inputs[choice.head.name], labels, n, choice.l2, empty_views)
    seen = choice.head.calibration(training, inputs[choice.head.name])  # evenly spaced below; never held-out frames
    calibration = seen[np.linspace(0, len(seen) - 1, min(len(seen), opts.max_calibration)).astype(np.int64)]
    return fitted, choice, calibration


def _report_coverage(
    report: TrainReport,
    cover: dict[str, Any],
    visits: dict[str, int],
    choice: head.Choice,
    deployed: bytes,
    frames: np.ndarray,
    labels: np.ndarray,
    classes: tuple[str, ...],
) -> None:
    """What the training `frames` cover, into the report: their light, the dimmed probe's verdicts,
    their visits per class, and a note for each that is narrow."""
    from edge.train import build

    report.conditions = cover
    report.head["visits"] = visits
    report.notes += [conditions.narrow_note(cover)] if cover["narrow"] else []
    if conditions.few_visits(visits):
        report.notes.append(conditions.visits_note(visits))
        if report.head["chosen_by"] != "--head":
            report.head["chosen_by"] += f" (margins waived: a class in fewer than {conditions.MIN_VISITS} stretches of time)"
    report.notes += _probe_notes(choice)
    # The probe again, on the deployed int8 model: on the lab's footage the float change head kept
    # every dimmed empty frame "absent", its int8 model, until its standardisation was made to hold
    # in int8, none (docs/design/footage-benchmark.md).
    if cover["narrow"]:
        cover["dimmed_int8_kept"] = conditions.kept(build.tflite_probs(deployed, conditions.dimmed(frames)), labels, classes)
        dim_note = conditions.dimmed_note(cover["dimmed_int8_kept"], head.PROBE_MIN)
        report.notes += [dim_note] if dim_note else []


def _probe_notes(choice: head.Choice) -> list[str]:
    """What the light probe said of the heads, when it ran (the training frames span one light)."""
    if not choice.probe:
        return []
    notes = []
    light = f"once dimmed to {conditions.PROBE_LIGHT:g} of the light (a light change these frames never showed)"
    if choice.excluded:
        shown = ", ".join(f"{name} ({choice.probe_of(name):.0f} %)" for name in choice.excluded)
        notes.append(f"auto: left out {shown}: better cross-validated, but kept under {head.PROBE_MIN:g} % of the frames in their class {light}")
    if choice.probe_of(choice.head.name) < head.PROBE_MIN:
        notes.append(
            f"{choice.head.name}: keeps only {choice.probe_of(choice.head.name):.0f} % of the training frames in their class {light}, "
            f"and every candidate kept under {head.PROBE_MIN:g} %: in other light its answers are not to be trusted "
            "(the daemon's light check reports such frames)"
        )
    return notes


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
    split: dataset.Split,
    candidates: list[Head],
    choice: head.Choice,
    held: list[Metrics],
    problems: list[str],
) -> TrainReport:
    train_idx, test_idx = split.train, split.held_out
    per_class = {
        c: {"train": int(np.sum(data.labels[train_idx] == i)), "held_out": int(np.sum(data.labels[test_idx] == i))}
        for i, c in enumerate(data.classes)
    }
    images = {
        "folder": str(opts.images),
        "train": len(train_idx),
        "held_out": len(test_idx),
        "between": len(split.gap),
        "per_class": per_class,
        "split": split.how,
        "times": _times(data, split),
        "crop_fraction": opts.crop_fraction,
        "skipped": list(data.skipped),
    }
    margins = ", ".join(f"{h.name} {h.cost_margin:g}" for h in candidates if h.cost_margin)
    auto = "auto: best cross-validated" + (f"; a costlier head only if better by more than its margin, in points: {margins}" if margins else "")
    head_info = {
        "input": choice.head.name,
        "chosen_by": auto if opts.head == "auto" else "--head",
        "l2": choice.l2,
        "cv_accuracy": choice.cv,
        "cv": f"{FOLDS} folds of the training images, "
        + ("each a stretch of time of every class" if split.in_time else "every 4th image")
        + " (augmented views stay with their image)",
    }
    if choice.probe:
        head_info["light_probe"] = choice.probe
        head_info["light_probe_is"] = (
            f"the same folds' fits on their training images dimmed to {conditions.PROBE_LIGHT:g} of the light; "
            f"auto takes a head below {head.PROBE_MIN:g} % only when every head is"
        )
    gate = {"passed": not problems, "problems": problems, **asdict(opts.gate)}
    return TrainReport(list(data.classes), images, head_info, opts.augment.describe(), held, gate)


def _times(data: dataset.Loaded, split: dataset.Split) -> dict[str, dict[str, list[str]]]:
    """Each class's first and last capture time (UTC) in training and held out."""

    def span(idx: np.ndarray) -> list[str]:
        finite = data.times[idx][np.isfinite(data.times[idx])]
        return [time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) for t in (finite.min(), finite.max())] if len(finite) else []

    return {
        c: {part: span(idx[data.labels[idx] == i]) for part, idx in (("train", split.train), ("held_out", split.held_out))}
        for i, c in enumerate(data.classes)
    }


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


def _write_report(opts: Options, report: TrainReport, held: list[Metrics], data: dataset.Loaded, test_idx: np.ndarray) -> None:
    if not opts.report:
        return
    where = {str(data.paths[i]): i for i in test_idx}
    wrong = [(data.frames[where[m["path"]]], m) for m in shown(report.mistakes)]
    with writing(opts.report):
        write_atomic(opts.report, report.to_json().encode())
        write_atomic(confusion_path(opts.report), report_png([held[0], held[-1]], report.classes, wrong))
