"""Held-out metrics (accuracy, per-class precision/recall, confusion), the gate, and a confusion-matrix PNG."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Metrics:
    name: str
    accuracy: float  # percent
    per_class: dict[str, dict[str, float]]  # class -> precision, recall (percent), support
    confusion: list[list[int]]  # rows = true class, columns = predicted
    agreement: float | None = None  # percent of top-1s equal to the float custom model's


def measure(name: str, probs: np.ndarray, labels: np.ndarray, classes: tuple[str, ...], baseline: np.ndarray | None = None) -> Metrics:
    """Ties (a uint8 output's step is 1/256) go to the lower class index, as on the device."""
    pred = np.argmax(probs, axis=1)
    n = len(classes)
    confusion = np.zeros((n, n), np.int64)
    np.add.at(confusion, (labels, pred), 1)
    per_class = {}
    for i, cls in enumerate(classes):
        predicted, actual = int(confusion[:, i].sum()), int(confusion[i].sum())
        per_class[cls] = {
            "precision": _pct(confusion[i, i] / predicted) if predicted else 0.0,
            "recall": _pct(confusion[i, i] / actual) if actual else 0.0,
            "support": actual,
        }
    agreement = None if baseline is None else _pct(np.mean(pred == np.argmax(baseline, axis=1)))
    return Metrics(name, _pct(np.mean(pred == labels)), per_class, confusion.tolist(), agreement)


def _pct(x: Any) -> float:
    return round(100.0 * float(x), 2)


@dataclass(frozen=True)
class Gate:
    min_accuracy: float = 90.0  # int8 held-out accuracy, percent
    min_agreement: float = 95.0  # int8 vs float custom model, percent
    min_kernel_agreement: float = 80.0  # top-1s XNNPACK on this CPU shares with the reference kernels, percent

    def failures(self, int8: Metrics) -> list[str]:
        problems = []
        if int8.accuracy < self.min_accuracy:
            problems.append(f"held-out accuracy {int8.accuracy:.1f}% < --min-accuracy {self.min_accuracy:g}%")
        if int8.agreement is not None and int8.agreement < self.min_agreement:
            problems.append(f"agreement with the float model {int8.agreement:.1f}% < --min-agreement {self.min_agreement:g}%")
        return problems


@dataclass
class TrainReport:
    classes: list[str]
    images: dict[str, Any]  # folder, counts per class, split, skipped
    head: dict[str, Any]  # chosen input, cross-validated scores, regularisation
    augmentation: dict[str, str]
    held_out: list[Metrics]  # float custom model, int8 (plain), int8 (deployed)
    gate: dict[str, Any]
    model: dict[str, Any] = field(default_factory=dict)
    cost: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # int8 held-out accuracy on this CPU's XNNPACK beside the reference kernels' (held_out), and how far they agree
    kernels: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True) + "\n"

    def summary(self) -> str:
        counts = self.images["per_class"]
        lines = [
            f"classes   {len(self.classes)}: " + ", ".join(f"{c} ({counts[c]['train']}+{counts[c]['held_out']})" for c in self.classes),
            f"images    {self.images['train']} training, {self.images['held_out']} held out, {len(self.images['skipped'])} unreadable skipped",
            f"head      on the {self.head['input']}, l2 {self.head.get('l2', 0):g} (cross-validated, best l2 of each: "
            + ", ".join(f"{k} {v:.1f}%" for k, v in _best_per_input(self.head["cv_accuracy"]).items())
            + ")",
            "held out  "
            + "  ".join(f"{m.name} {m.accuracy:.1f}%" + (f" (agrees {m.agreement:.1f}%)" if m.agreement is not None else "") for m in self.held_out),
        ]
        if self.kernels:
            lines.append(
                f"kernels   int8 held out {self.kernels['accuracy_reference']:.1f}% on TFLite's reference kernels (above: the gated figure, "
                f"the same on every CPU), {self.kernels['accuracy_xnnpack']:.1f}% on XNNPACK here; {self.kernels['summary']}"
            )
        worst = min(self.held_out[-1].per_class.items(), key=lambda kv: kv[1]["recall"])
        lines.append(f"weakest   {worst[0]!r}: recall {worst[1]['recall']:.1f}%, precision {worst[1]['precision']:.1f}%")
        lines.append(f"gate      {'passed' if self.gate['passed'] else 'FAILED: ' + '; '.join(self.gate['problems'])}")
        if self.model:
            lines.append(f"model     {self.model['path']}  {self.model['bytes'] / 1024:.0f} KiB  sha256 {self.model['sha256'][:16]}…")
        if self.cost:
            lines.append(f"cost      {self.cost['total_s']:.0f} s, peak memory {self.cost['peak_rss_mb']:.0f} MB")
        lines += [f"note      {n}" for n in self.notes]
        return "\n".join(lines)


def _best_per_input(cv: dict[str, float]) -> dict[str, float]:
    best: dict[str, float] = {}
    for key, score in cv.items():
        kind = key.split()[0]
        best[kind] = max(best.get(kind, 0.0), score)
    return best


def _agrees(m: Metrics) -> str:
    return "" if m.agreement is None else f" (agrees {m.agreement:.1f}%)"


def confusion_png(metrics: list[Metrics], classes: tuple[str, ...] | list[str], cell: int = 0) -> bytes:
    """Confusion matrices side by side (rows = true class, columns = predicted), shaded by row share."""
    import io

    from PIL import Image, ImageDraw, ImageFont

    n = len(classes)
    cell = cell or max(14, min(48, 480 // n))
    font = ImageFont.load_default()
    names = [c if len(c) <= 16 else c[:15] + "…" for c in classes]
    margin = 8 + 7 * max(len(s) for s in names)
    title_h, gap = 28, 24
    panel = max(n * cell, 6 * max(len(f"{m.name}: 100.0%") for m in [*metrics]), 170)  # titles must not overlap
    width = margin + len(metrics) * (panel + gap) + 8
    height = title_h + n * cell + 8 + (margin if n <= 20 else 0)
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    for row, name in enumerate(names):
        draw.text((4, title_h + row * cell + cell // 2 - 5), name, fill="black", font=font)
    for k, m in enumerate(metrics):
        x0 = margin + k * (panel + gap)
        draw.text((x0, 4), f"{m.name}: {m.accuracy:.1f}%", fill="black", font=font)
        draw.text((x0, 15), "rows true, columns predicted", fill="gray", font=font)
        conf = np.asarray(m.confusion, np.float64)
        share = conf / np.maximum(conf.sum(axis=1, keepdims=True), 1)
        for r in range(n):
            for c in range(n):
                v = share[r, c]
                # Right answers in blue, confusions in red; darker = larger share of the true class.
                shade = int(255 - 200 * v)
                fill = (shade, shade, 255) if r == c else (255, shade, shade)
                box = (x0 + c * cell, title_h + r * cell, x0 + (c + 1) * cell - 1, title_h + (r + 1) * cell - 1)
                draw.rectangle(box, fill=fill, outline=(220, 220, 220))
                if cell >= 20 and conf[r, c]:
                    draw.text((box[0] + 3, box[1] + cell // 2 - 5), str(int(conf[r, c])), fill="black" if v < 0.6 else "white", font=font)
        if n <= 20:
            for c, name in enumerate(names):
                label = Image.new("RGB", (margin, 12), "white")
                ImageDraw.Draw(label).text((0, 0), name, fill="black", font=font)
                img.paste(label.rotate(90, expand=True), (x0 + c * cell + cell // 2 - 6, title_h + n * cell + 4))
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()
