"""Held-out metrics (accuracy, per-class precision/recall, confusion), the gate, the frames it got wrong, and the report's PNG."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
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
    conditions: dict[str, Any] = field(default_factory=dict)  # the light the frames cover (edge/train/conditions.py)
    mistakes: list[dict[str, Any]] = field(default_factory=list)  # every held-out frame the deployed model got wrong

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True) + "\n"

    def summary(self) -> str:
        counts = self.images["per_class"]
        lines = [
            f"classes   {len(self.classes)}: " + ", ".join(f"{c} ({counts[c]['train']}+{counts[c]['held_out']})" for c in self.classes),
            f"images    {self.images['train']} training, {self.images['held_out']} held out"
            + (f", {self.images['between']} between them unused" if self.images.get("between") else "")
            + f", {len(self.images['skipped'])} unreadable skipped",
            f"split     {self.images['split']}",
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
        if self.mistakes:
            shown = ", ".join(f"{m['true']} as {m['predicted']} {m['score']:.2f}" for m in self.mistakes[:3])
            lines.append(f"wrong     {len(self.mistakes)} held-out frames (e.g. {shown}; all in the report, a few in its PNG)")
        if self.conditions:
            light = ", ".join(f"{c} {v['train'][0]:g}-{v['train'][2]:g}" for c, v in self.conditions["brightness"].items() if v["train"])
            lines.append(f"light     training frames' brightness (of 255, 5th-95th percentile): {light}")
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


SHOWN_PER_CLASS = 6  # wrong frames pictured per true class in the report's PNG


def mistakes(probs: np.ndarray, labels: np.ndarray, classes: Sequence[str], paths: Sequence[Path], times: np.ndarray) -> list[dict[str, Any]]:
    """Every held-out frame the model got wrong, by true class, most confident first: its file, capture
    time (UTC), true and predicted class, and the predicted class's probability."""
    pred = np.argmax(probs, axis=1)
    wrong = sorted((int(i) for i in np.flatnonzero(pred != labels)), key=lambda i: (labels[i], -probs[i, pred[i]], paths[i].name))
    return [
        {
            "path": str(paths[i]),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(times[i])) if np.isfinite(times[i]) else "",
            "true": classes[labels[i]],
            "predicted": classes[pred[i]],
            "score": round(float(probs[i, pred[i]]), 3),
        }
        for i in wrong
    ]


def shown(wrong: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The mistakes the PNG pictures: the first SHOWN_PER_CLASS of each true class."""
    count: dict[str, int] = {}
    out = []
    for m in wrong:
        count[m["true"]] = count.get(m["true"], 0) + 1
        if count[m["true"]] <= SHOWN_PER_CLASS:
            out.append(m)
    return out


def report_png(metrics: list[Metrics], classes: Sequence[str], wrong: list[tuple[np.ndarray, dict[str, Any]]]) -> bytes:
    """The confusion matrices, and under them the held-out frames the model got wrong (`wrong`: the
    frame and its mistakes() entry), one row per true class, with the predicted class and its score."""
    import io

    from PIL import Image, ImageDraw, ImageFont

    with Image.open(io.BytesIO(confusion_png(metrics, classes))) as img:
        top = img.convert("RGB")
    font = ImageFont.load_default()
    tile, caption, pad = 128, 26, 6
    rows: dict[str, list[tuple[np.ndarray, dict[str, Any]]]] = {}
    for frame, m in wrong:
        rows.setdefault(m["true"], []).append((frame, m))
    header = 30
    width = max(top.width, pad + SHOWN_PER_CLASS * (tile + pad))
    height = top.height + header + len(rows) * (tile + caption + pad) + pad
    out = Image.new("RGB", (width, height), "white")
    out.paste(top, (0, 0))
    draw = ImageDraw.Draw(out)
    y = top.height + 6
    title = f"held-out frames the {metrics[-1].name} model got wrong, by true class, most confident first" if rows else "no held-out frame was wrong"
    draw.text((pad, y), title, fill="black", font=font)
    y += header - 6
    for true, items in rows.items():
        for k, (frame, m) in enumerate(items):
            x = pad + k * (tile + pad)
            out.paste(Image.fromarray(frame).resize((tile, tile)), (x, y))
            draw.rectangle((x - 1, y - 1, x + tile, y + tile), outline=(200, 40, 40))
            draw.text((x, y + tile + 2), f"true {true[:14]}", fill="black", font=font)
            draw.text((x, y + tile + 13), f"said {m['predicted'][:10]} {m['score']:.2f}", fill=(200, 40, 40), font=font)
        y += tile + caption + pad
    buf = io.BytesIO()
    out.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def confusion_png(metrics: list[Metrics], classes: Sequence[str], cell: int = 0) -> bytes:
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
