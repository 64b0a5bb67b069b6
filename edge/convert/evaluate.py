"""Accuracy on a labelled image folder and interleaved invoke latency, for any set of models."""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import ModelError
from edge.model.contract import INPUT_SHAPE, NUM_CLASSES
from edge.model.interpreter import Interpreter
from edge.model.runtime import delegated_op_counts


class Runner(Interpreter):
    """A named model under evaluation (1 thread; XNNPACK, or TFLite's "builtin" or "reference" kernels):
    uint8 RGB frames in, float probabilities out."""

    def __init__(self, name: str, model: Path | bytes, threads: int = 1, kernels: str = "xnnpack"):
        super().__init__(model, threads, builtin_kernels=kernels == "builtin", reference_kernels=kernels == "reference")
        self.name, self.kernels = name, kernels
        if self.input_shape != INPUT_SHAPE or self.output_shape[-1] != NUM_CLASSES:
            where = name if isinstance(model, bytes) else str(model)
            want = "x".join(str(n) for n in INPUT_SHAPE)
            raise ModelError(f"{where}: input {list(self.input_shape)} / output {list(self.output_shape)}, expected {want} and 1x{NUM_CLASSES}")
        self.cpu_ops = delegated_op_counts(self.raw)[1]


def predict(runner: Runner, frames: np.ndarray) -> np.ndarray:
    return np.stack([runner.classify(f) for f in frames]) if len(frames) else np.zeros((0, NUM_CLASSES), np.float32)


def ranks(probs: np.ndarray, k: int = 5) -> np.ndarray:
    """Top-k class indices per row; ties go to the lower class index (as Engine.top_k)."""
    return np.argsort(-probs, axis=1, kind="stable")[:, :k]


@dataclass(frozen=True)
class Accuracy:
    name: str
    images: int
    top1: float  # percent
    top5: float
    agreement: float | None  # percent of top-1s equal to the baseline model's
    top1_ties: float  # percent of images whose best score is shared by two classes (uint8 step 1/256)


def accuracy(name: str, probs: np.ndarray, labels: np.ndarray, baseline: np.ndarray | None) -> Accuracy:
    top = ranks(probs)
    n = len(labels)
    sorted_scores = -np.sort(-probs, axis=1)
    ties = float(np.mean(sorted_scores[:, 0] == sorted_scores[:, 1])) if n else 0.0
    agree = None if baseline is None else _pct(np.mean(top[:, 0] == ranks(baseline, 1)[:, 0]))
    return Accuracy(
        name=name,
        images=n,
        top1=_pct(np.mean(top[:, 0] == labels)) if n else 0.0,
        top5=_pct(np.mean(np.any(top == labels[:, None], axis=1))) if n else 0.0,
        agreement=agree,
        top1_ties=_pct(ties),
    )


def _pct(x: Any) -> float:
    return round(100.0 * float(x), 2)


@dataclass(frozen=True)
class Latency:
    name: str
    median_ms: float
    min_ms: float
    max_ms: float
    vs_first: float  # median / the first model's median
    cpu_ops: dict[str, int]  # ops running outside XNNPACK


def latency(runners: list[Runner], frame: np.ndarray, rounds: int = 300, warmup: int = 20) -> list[Latency]:
    """Invoke each model once per round, in turn, so load changes on a busy machine hit all alike."""
    for r in runners:
        r.set_input(frame)
    samples: list[list[float]] = [[] for _ in runners]
    for i in range(warmup + rounds):
        for r, times in zip(runners, samples, strict=True):
            t0 = time.perf_counter()
            r.invoke()
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1e3)
    medians = [statistics.median(t) for t in samples]
    return [
        Latency(r.name, round(m, 4), round(min(t), 4), round(max(t), 4), round(m / medians[0], 3), r.cpu_ops)
        for r, t, m in zip(runners, samples, medians, strict=True)
    ]


@dataclass(frozen=True)
class Evaluation:
    images: str
    count: int
    baseline: str
    accuracy: tuple[Accuracy, ...]
    latency: tuple[Latency, ...]
    threads: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        lines = [f"{self.count} images from {self.images}; agreement = same top-1 as {self.baseline}"]
        lines.append(f"  {'model':<28} {'top-1':>6} {'top-5':>6} {'agree':>6} {'ties':>5}")
        for a in self.accuracy:
            agree = "-" if a.agreement is None else f"{a.agreement:.1f}"
            lines.append(f"  {a.name:<28} {a.top1:6.1f} {a.top5:6.1f} {agree:>6} {a.top1_ties:5.1f}")
        if self.latency:
            lines.append(f"  invoke latency, {self.threads} thread(s), interleaved:")
            for lat in self.latency:
                outside = ",".join(f"{k}x{v}" for k, v in sorted(lat.cpu_ops.items())) or "none"
                lines.append(f"  {lat.name:<28} median {lat.median_ms:6.3f} ms  {lat.vs_first:5.2f}x  (outside XNNPACK: {outside})")
        return "\n".join(lines)


def evaluate(
    models: list[tuple[str, Path | bytes]],
    frames: np.ndarray,
    labels: list[int],
    images: str,
    threads: int = 1,
    rounds: int = 300,
    timed: list[str] | None = None,
    kernels: dict[str, str] | None = None,
) -> tuple[Evaluation, dict[str, np.ndarray]]:
    """Accuracy of every model on the frames (agreement against the first) and the interleaved
    latency of the `timed` ones (default: all); `kernels` runs the named models on TFLite's
    "builtin" or "reference" kernels instead of XNNPACK."""
    runners = [Runner(name, model, threads, (kernels or {}).get(name, "xnnpack")) for name, model in models]
    probs = {r.name: predict(r, frames) for r in runners}
    truth = np.asarray(labels, np.int64)
    baseline = probs[runners[0].name]
    acc = tuple(accuracy(r.name, probs[r.name], truth, None if i == 0 else baseline) for i, r in enumerate(runners))
    clocked = [r for r in runners if timed is None or r.name in timed]
    lat = tuple(latency(clocked, frames[0], rounds)) if rounds > 0 and len(frames) and clocked else ()
    return Evaluation(images, len(frames), runners[0].name, acc, lat, threads), probs
