"""The conversion report: data (JSON) and a short human rendering of it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from edge.convert.evaluate import Accuracy, Evaluation

XNNPACK_HERE = "ours, XNNPACK here"  # the evaluation's row of the converted model on this CPU's XNNPACK


@dataclass(frozen=True)
class Gate:
    min_agreement: float  # percent of held-out top-1s equal to the float model's
    max_top1_drop: float  # points of top-1 below the float model allowed
    min_top1_vs_reference: float  # points relative to the reference quant model (negative = may be below)
    # percent of held-out top-1s XNNPACK on this CPU must share with the reference kernels (edge/convert/kernelgate.py)
    min_kernel_agreement: float = 80.0

    def failures(self, ours: Accuracy, float_: Accuracy, reference: Accuracy | None) -> list[str]:
        problems: list[str] = []
        if ours.agreement is not None and ours.agreement < self.min_agreement:
            problems.append(f"agreement with float {ours.agreement:.1f}% < {self.min_agreement:.1f}%")
        if ours.top1 < float_.top1 - self.max_top1_drop:
            problems.append(f"top-1 {ours.top1:.1f}% < float {float_.top1:.1f}% - {self.max_top1_drop:.1f}")
        if reference is not None and ours.top1 < reference.top1 + self.min_top1_vs_reference:
            problems.append(f"top-1 {ours.top1:.1f}% < reference quant {reference.top1:.1f}% {self.min_top1_vs_reference:+.1f}")
        return problems


@dataclass(frozen=True)
class ConversionReport:
    converter: dict[str, str]
    source: dict[str, Any]
    calibration: dict[str, Any]
    rebuild_max_abs_diff: float
    evaluation: Evaluation | None  # held-out images: float, reference, plain PTQ, ours; None = not measured (--no-gate)
    techniques: dict[str, Any]
    model: dict[str, Any]
    gate: dict[str, Any]
    targets: dict[str, Any]
    cost: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    # XNNPACK on this CPU against the reference kernels on the held-out images (kernelgate.KernelAgreement)
    kernels: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True) + "\n"

    def summary(self) -> str:
        m, c = self.model, self.calibration
        lines = [
            f"model     {m['path']}  {m['bytes'] / 1024:.0f} KiB  sha256 {m['sha256'][:16]}…",
            f"contract  input {m['input']}  output {m['output']}; outside XNNPACK: {_ops(m['cpu_ops'])}",
            f"calibrated on {c['count']} images ({c['split']}) of {c['folder']}, {len(c['skipped'])} unreadable skipped",
            *self._measured(),
            f"cost      {self.cost['total_s']:.0f} s ("
            + ", ".join(f"{k} {v:.0f} s" for k, v in self.cost["stages_s"].items())
            + f"), peak memory {self.cost['peak_rss_mb']:.0f} MB",
        ]
        lines += [f"note      {n}" for n in self.notes]
        return "\n".join(lines)

    def _measured(self) -> list[str]:
        if self.evaluation is None:
            return [f"NOT MEASURED: {self.gate.get('skipped', 'no evaluation')}"]
        return [
            f"evaluated on the held-out {self.evaluation.count} images ({self.evaluation.images}); "
            f"ours on TFLite's reference kernels (the gated figure: the same on every CPU), {XNNPACK_HERE!r} beside it:",
            self.evaluation.summary(),
            *([f"kernels   {self.kernels['summary']}"] if self.kernels else []),
            "targets   " + "  ".join(f"{k}: {'ok' if v['met'] else 'MISSED'} ({v['value']})" for k, v in self.targets.items()),
        ]


def _ops(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}x{v}" for k, v in sorted(counts.items())) or "none"
