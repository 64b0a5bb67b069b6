"""Accuracy on a labelled image folder and interleaved invoke latency, for any set of models."""

from __future__ import annotations

import csv
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import ModelError, SourceError
from edge.model.runtime import delegated_op_counts, make_interpreter

LABELS_CSV = "labels.csv"
CSV_COLUMNS = ("file", "synset", "class_index", "class_name")


def read_labelled(folder: Path) -> list[tuple[Path, int]]:
    """(image path, class index) from DIR/labels.csv (columns file,synset,class_index,class_name), in file-name order."""
    csv_path = Path(folder) / LABELS_CSV
    rows: list[tuple[Path, int]] = []
    line = 1
    try:
        with open(csv_path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or not set(CSV_COLUMNS) <= set(reader.fieldnames):
                raise SourceError(f"{csv_path}: expected columns {','.join(CSV_COLUMNS)}, got {reader.fieldnames}")
            for row in reader:
                line = reader.line_num
                rows.append((Path(folder) / row["file"], int(row["class_index"])))
    except FileNotFoundError as exc:
        raise SourceError(f"{csv_path}: missing; a labelled folder needs labels.csv ({','.join(CSV_COLUMNS)})") from exc
    except OSError as exc:  # a folder named labels.csv, no permission, an I/O error
        raise SourceError(f"{csv_path}: cannot read ({exc.strerror or exc})") from exc
    except (ValueError, KeyError, TypeError, csv.Error) as exc:  # a short row's missing columns are None: TypeError
        raise SourceError(f"{csv_path}: malformed row at line {line} ({exc})") from exc
    if not rows:
        raise SourceError(f"{csv_path}: no labelled images")
    return sorted(rows)


class Runner:
    """One interpreter (1 thread, XNNPACK) that takes uint8 RGB frames whatever its input type,
    and returns float probabilities whatever its output type."""

    def __init__(self, name: str, model: Path | bytes, threads: int = 1):
        self.name = name
        self.interp: Any = make_interpreter(model, threads)
        inp, out = self.interp.get_input_details()[0], self.interp.get_output_details()[0]
        if tuple(inp["shape"]) != (1, 128, 128, 3) or int(out["shape"][-1]) != 1001:
            where = name if isinstance(model, bytes) else str(model)
            raise ModelError(f"{where}: input {list(inp['shape'])} / output {list(out['shape'])}, expected 1x128x128x3 and 1x1001")
        self.in_index, self.out_index = int(inp["index"]), int(out["index"])
        self.in_dtype = np.dtype(inp["dtype"])
        self.in_quant = inp["quantization"]
        self.out_dtype = np.dtype(out["dtype"])
        self.out_scale, self.out_zero = out["quantization"]
        self.cpu_ops = delegated_op_counts(self.interp)[1]

    def feed(self, frame: np.ndarray) -> np.ndarray:
        """The tensor this model wants for a uint8 RGB frame."""
        if self.in_dtype == np.uint8:
            return np.asarray(frame[None])
        normalized = (frame.astype(np.float32) - 127.5) / 127.5  # the float model's training normalisation
        if self.in_dtype == np.float32:
            return normalized[None]
        scale, zero = self.in_quant
        info = np.iinfo(self.in_dtype)
        return np.asarray(np.clip(np.round(normalized / scale) + zero, info.min, info.max).astype(self.in_dtype)[None])

    def probs(self, frame: np.ndarray) -> np.ndarray:
        self.interp.set_tensor(self.in_index, self.feed(frame))
        self.interp.invoke()
        raw = self.interp.get_tensor(self.out_index)[0]
        if self.out_dtype == np.float32:
            return np.asarray(raw, np.float32)
        # Dequantize with the tensor's own parameters (a uint8 softmax is scale 1/256, zero 0).
        return np.asarray(np.float32(self.out_scale) * (raw.astype(np.int32) - int(self.out_zero)), np.float32)


def predict(runner: Runner, frames: np.ndarray) -> np.ndarray:
    return np.stack([runner.probs(f) for f in frames]) if len(frames) else np.zeros((0, 1001), np.float32)


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
        r.interp.set_tensor(r.in_index, r.feed(frame))
    samples: list[list[float]] = [[] for _ in runners]
    for i in range(warmup + rounds):
        for r, times in zip(runners, samples, strict=True):
            t0 = time.perf_counter()
            r.interp.invoke()
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
            lines.append(f"  invoke latency, {self.threads} thread(s), XNNPACK, interleaved:")
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
) -> tuple[Evaluation, dict[str, np.ndarray]]:
    """Accuracy of every model on the frames (agreement against the first) and the interleaved
    latency of the `timed` ones (default: all)."""
    runners = [Runner(name, model, threads) for name, model in models]
    probs = {r.name: predict(r, frames) for r in runners}
    truth = np.asarray(labels, np.int64)
    baseline = probs[runners[0].name]
    acc = tuple(accuracy(r.name, probs[r.name], truth, None if i == 0 else baseline) for i, r in enumerate(runners))
    clocked = [r for r in runners if timed is None or r.name in timed]
    lat = tuple(latency(clocked, frames[0], rounds)) if rounds > 0 and len(frames) and clocked else ()
    return Evaluation(images, len(frames), runners[0].name, acc, lat, threads), probs


def load_labelled(folder: Path, split: str = "all") -> tuple[list[Path], np.ndarray, list[int]]:
    """Paths, frames and labels of a labelled folder (optionally the converter's split of it)."""
    from edge.convert.calibrate import load, select

    rows = select(read_labelled(folder), split)
    images = load([p for p, _ in rows], "evaluation images", minimum=1)
    if len(images.paths) != len(rows):
        raise SourceError(f"{folder}: {len(rows) - len(images.paths)} labelled images are unreadable: {images.skipped[0]}")
    return [p for p, _ in rows], images.frames, [c for _, c in rows]
