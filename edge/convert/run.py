"""The conversion, end to end: checks that fail fast, rebuild, quantize, correct, evaluate, gate, write."""

from __future__ import annotations

import resource
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge import __version__, paths
from edge.convert import calibrate, dataset
from edge.convert.evaluate import Evaluation
from edge.convert.output import check_delegation, write_model, writing
from edge.convert.report import XNNPACK_HERE, ConversionReport, Gate
from edge.convert.source import FloatModelSource, resolve
from edge.errors import GateError, SourceError
from edge.fsutil import check_writable
from edge.model.contract import CROP_FRACTION, INPUT_SHAPE, NUM_CLASSES

if TYPE_CHECKING:
    from edge.convert.biascorrect import LayerFix
    from edge.convert.kernelgate import KernelAgreement


@dataclass(frozen=True)
class Options:
    out: Path
    source: str | None = None
    calibration: Path = field(default_factory=paths.dev_images)
    calibration_count: int = 250
    eval_images: Path | None = None  # default: the calibration folder's held-out half
    report: Path | None = None
    labels: Path = field(default_factory=paths.labels_file)
    allow_unverified: bool = False
    bias_correction: bool = True
    # None: no labelled images to measure on, so no evaluation and no gate (`--no-gate`); said loudly.
    gate: Gate | None = field(default_factory=lambda: Gate(min_agreement=80.0, max_top1_drop=1.5, min_top1_vs_reference=-1.0))
    latency_rounds: int = 300
    min_calibration: int = 100


@dataclass
class _Clock:
    stages: dict[str, float] = field(default_factory=dict)
    start: float = field(default_factory=time.perf_counter)
    _last: float = field(default_factory=time.perf_counter)

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.stages[stage] = round(now - self._last, 2)
        self._last = now


@dataclass(frozen=True)
class ImagePlan:
    """Which images calibrate and which measure the model."""

    calibration: list[Path]
    calibration_split: str  # "calibration" (even labels.csv rows of a shared folder) or "all"
    eval_folder: Path | None  # None: not measured (no gate)
    eval_split: str  # "held-out" (odd labels.csv rows of a shared folder) or "all"


GATE_SKIPPED = (
    "accuracy gate skipped (--no-gate): no labelled images measure this model, so nothing checks that quantization "
    "kept its accuracy; measure it with `mnv1-edge eval --images DIR MODEL` on a folder with labels.csv"
)


def plan_images(opts: Options) -> ImagePlan:
    """Fail fast on missing folders or a bad labels.csv; split a folder that supplies both halves."""
    if opts.gate is None:  # nothing is measured: only the calibration images are planned
        folder = Path(opts.calibration)
        if (folder / "labels.csv").is_file():  # a labelled folder still calibrates on its calibration half only
            labelled = [p for p, _ in dataset.read_labelled(folder)]
            return ImagePlan(calibrate.calibration_paths(folder, opts.calibration_count, labelled), "calibration", None, "none")
        return ImagePlan(calibrate.calibration_paths(folder, opts.calibration_count), "all", None, "none")
    folder = Path(opts.eval_images or opts.calibration)
    if opts.eval_images is None and not (folder / "labels.csv").is_file():
        if not (paths.dev_images() / "labels.csv").is_file():
            raise SourceError(
                f"{folder}: no labels.csv to measure the model on; pass --eval-images DIR (a folder with labels.csv), "
                "or --no-gate to convert without measuring it"
            )
        folder = paths.dev_images()  # calibrate on the user's images, measure on the labelled dev set
    rows = dataset.read_labelled(folder)  # a bad labels.csv fails here, before any heavy work
    if folder.resolve() != Path(opts.calibration).resolve():
        return ImagePlan(calibrate.calibration_paths(Path(opts.calibration), opts.calibration_count), "all", folder, "all")
    # Both halves come from the one list of labels.csv rows (as `eval --split` reads it), so an
    # unlabelled or missing image file cannot shift one half's parity against the other's.
    labelled = [p for p, _ in rows]
    return ImagePlan(calibrate.calibration_paths(folder, opts.calibration_count, labelled), "calibration", folder, "held-out")


def convert(opts: Options) -> ConversionReport:
    # One straight sequence of stages, each timed by `clock`; splitting it would only hide the order.
    clock = _Clock()
    check_writable(opts.out, "the model")
    if opts.report:
        check_writable(opts.report, "the report")
    source = resolve(opts.source, opts.allow_unverified)
    from edge.convert import rebuild

    layers = rebuild.read_layers(source.data, source.origin)  # architecture check: cheap, no TensorFlow
    plan = plan_images(opts)
    if opts.gate is None:
        print(f"mnv1-edge convert: warning: {GATE_SKIPPED}", file=sys.stderr, flush=True)
    from edge.convert.manifest import read_labels

    labels = read_labels(opts.labels)
    clock.lap("checks")

    cal = dataset.load(plan.calibration, "calibration", minimum=min(opts.min_calibration, opts.calibration_count))
    held = dataset.load_labelled(plan.eval_folder, plan.eval_split) if plan.eval_folder is not None else None
    clock.lap("load images")

    from edge.convert import biascorrect, quantize

    warnings.filterwarnings("ignore", category=UserWarning, module="keras")  # Keras 3 input-structure nags
    with quantize.quiet():  # TensorFlow's C++ start-up prints CUDA probing noise on fds 1/2
        keras_model = rebuild.build_keras(layers)
    diff = rebuild.verify(keras_model, source.data, cal.frames, source.origin)
    clock.lap("rebuild + verify")

    plain = quantize.convert(keras_model, cal.frames)
    clock.lap("quantize")
    ours, fixes = plain, list[biascorrect.LayerFix]()
    if opts.bias_correction:
        means = biascorrect.float_channel_means(rebuild.build_keras(layers, "float64"), cal.frames)  # machine-independent sums
        ours, fixes = biascorrect.correct(plain, means, cal.frames)
        clock.lap("bias correction")

    evaluation, kernels = None, None
    if held is not None and opts.gate is not None:
        evaluation, kernels = _measure(opts, plan, source.data, ours, plain, held[1], held[2])
        clock.lap("evaluate")
    cpu_ops = check_delegation(ours)
    if evaluation is not None and opts.gate is not None and kernels is not None:
        acc = {a.name: a for a in evaluation.accuracy}
        problems = opts.gate.failures(acc["ours"], acc["float (source)"], acc.get("reference quant (Google)")) + kernels.failures()
        if problems:
            raise GateError(f"{opts.out}: accuracy gate failed: {'; '.join(problems)}; no model written")

    digest = cal.digest()  # hashes every calibration file: once
    gate_note = {"accuracy_gate": "passed" if evaluation is not None else "skipped (--no-gate)"}
    _write(opts, ours, labels, _source_info(source) | {"calibration_digest": digest} | gate_note | _converter_info(), cal)
    clock.lap("write + self-test")
    report = _report(opts, source, cal, digest, plan.calibration_split, diff, evaluation, fixes, ours, cpu_ops, clock)
    if kernels is not None:
        report.kernels.update(kernels.to_dict() | {"summary": kernels.summary()})
    if opts.report:
        from edge.fsutil import write_atomic

        with writing(opts.report):
            write_atomic(opts.report, report.to_json().encode())
    return report


def _measure(
    opts: Options, plan: ImagePlan, float_model: bytes, ours: bytes, plain: bytes, frames: Any, labels: list[int]
) -> tuple[Evaluation, KernelAgreement]:
    """Float, Google's quant model when present, ours (and plain PTQ) on the held-out images; ours
    (and plain PTQ) on TFLite's reference kernels, what the gate measures, and ours on this CPU's
    XNNPACK beside it, with how far the two agree."""
    from edge.convert.evaluate import evaluate
    from edge.convert.kernelgate import agreement
    from edge.model.contract import OUTPUT_STEP

    candidates: list[tuple[str, Path | bytes]] = [("float (source)", float_model)]
    if paths.reference_quant_model().is_file():
        candidates.append(("reference quant (Google)", paths.reference_quant_model()))
    candidates += [("ours", ours), (XNNPACK_HERE, ours)]
    if opts.bias_correction:
        candidates.append(("ours without bias correction", plain))
    # Latency only for the three deployable models, on XNNPACK (plain PTQ has the same graph as ours).
    timed = [name for name, _ in candidates if name not in ("ours", "ours without bias correction")]
    where = f"{plan.eval_folder} ({_split_text(plan.eval_split)})"
    reference = {"ours": "reference", "ours without bias correction": "reference"}
    evaluation, probs = evaluate(candidates, frames, labels, where, 1, opts.latency_rounds, timed, reference)
    assert opts.gate is not None
    return evaluation, agreement(probs["ours"], probs[XNNPACK_HERE], opts.gate.min_kernel_agreement, OUTPUT_STEP)


def _split_text(split: str) -> str:
    return {
        "held-out": "held out: odd labels.csv rows in file-name order",
        "calibration": "even labels.csv rows in file-name order",
        "all": "all images",
    }[split]


def _write(opts: Options, model: bytes, labels: tuple[str, ...], provenance: dict[str, Any], cal: dataset.ImageSet) -> None:
    from edge.model.preprocess import list_images

    refs = list_images(paths.sample_images()) if paths.sample_images().is_dir() else list(cal.paths[:8])
    write_model(Path(opts.out), model, labels, refs, provenance, CROP_FRACTION)  # the crop calibration and evaluation used


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _source_info(source: FloatModelSource) -> dict[str, Any]:
    return {"source": source.origin, "source_sha256": source.sha256, "source_verified": source.verified}


def _converter_info() -> dict[str, str]:
    import tensorflow as tf

    return {"converter_version": __version__, "tensorflow_version": tf.__version__}


def _report(
    opts: Options,
    source: FloatModelSource,
    cal: dataset.ImageSet,
    digest: str,
    cal_split: str,
    diff: float,
    evaluation: Evaluation | None,
    fixes: list[LayerFix],
    model: bytes,
    cpu_ops: dict[str, int],
    clock: _Clock,
) -> ConversionReport:
    # Builds one flat report from many facts; long only because the report has many fields.
    import hashlib
    from dataclasses import asdict

    if evaluation is None or opts.gate is None:
        techniques: dict[str, Any] = {"bias_correction_layer_by_layer": {"layers": [asdict(f) for f in fixes]}} if opts.bias_correction else {}
        targets: dict[str, Any] = {}
        gate: dict[str, Any] = {"passed": None, "skipped": GATE_SKIPPED}
    else:
        techniques, targets = _measured(opts, evaluation, fixes)
        gate = {"passed": True, **asdict(opts.gate)}
    return ConversionReport(
        converter=_converter_info(),
        source=_source_info(source),
        calibration={
            "folder": str(opts.calibration),
            "split": _split_text("calibration") if cal_split == "calibration" else "first images in file-name order",
            "count": len(cal.paths),
            "skipped": list(cal.skipped),
            "digest": digest,
        },
        rebuild_max_abs_diff=diff,
        evaluation=evaluation,
        techniques=techniques,
        model={
            "path": str(opts.out),
            "bytes": len(model),
            "sha256": hashlib.sha256(model).hexdigest(),
            "input": f"uint8 {'x'.join(str(n) for n in INPUT_SHAPE)} raw RGB",
            "output": f"uint8 1x{NUM_CLASSES} probabilities (scale 1/256)",
            "cpu_ops": cpu_ops,
        },
        gate=gate,
        targets=targets,
        cost={"stages_s": dict(clock.stages), "total_s": round(time.perf_counter() - clock.start, 1), "peak_rss_mb": round(_peak_rss_mb(), 1)},
        notes=[f"threads 1; {sys.platform}" + (f"; latency rounds {opts.latency_rounds}" if evaluation is not None else "")],
    )


def _measured(opts: Options, evaluation: Evaluation, fixes: list[LayerFix]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The report's techniques (accuracy of each step) and targets (met or missed) from the evaluation."""
    from dataclasses import asdict

    acc = {a.name: a for a in evaluation.accuracy}
    lat = {x.name: x for x in evaluation.latency}
    ours, flt, ref = acc["ours"], acc["float (source)"], acc.get("reference quant (Google)")
    techniques: dict[str, Any] = {"per_channel_ptq": asdict(acc.get("ours without bias correction", ours))}
    if opts.bias_correction:
        techniques["bias_correction_layer_by_layer"] = asdict(ours) | {"layers": [asdict(f) for f in fixes]}
    targets: dict[str, Any] = {
        "top1 >= float - 0.5": {"met": ours.top1 >= flt.top1 - 0.5, "value": f"{ours.top1:.1f} vs {flt.top1:.1f}"},
        "agreement >= 85%": {"met": (ours.agreement or 0) >= 85.0, "value": f"{ours.agreement:.1f}%"},
    }
    if ref is not None:
        targets["top1 >= reference"] = {"met": ours.top1 >= ref.top1, "value": f"{ours.top1:.1f} vs {ref.top1:.1f}"}
    if XNNPACK_HERE in lat and "reference quant (Google)" in lat:
        r_ref = lat[XNNPACK_HERE].median_ms / lat["reference quant (Google)"].median_ms
        targets["latency <= 0.6x reference"] = {"met": r_ref <= 0.6, "value": f"{r_ref:.2f}x"}
    if XNNPACK_HERE in lat:
        targets["latency <= 0.7x float"] = {"met": lat[XNNPACK_HERE].vs_first <= 0.7, "value": f"{lat[XNNPACK_HERE].vs_first:.2f}x"}
    return techniques, targets
