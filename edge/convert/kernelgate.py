"""The gates' kernel check: a model's int8 results with TFLite's reference kernels and with this CPU's XNNPACK, side by side."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.model import kernels

# The gates measure int8 accuracy with TFLite's reference kernels: plain integer code that computes
# the same on every CPU, so whether a model passes does not depend on the workstation's vector unit.
# XNNPACK, which the device runs, is measured beside them on the same frames and must agree: a
# kernel that computes otherwise (XNNPACK's x86 int8 sum before VNNI overflowed, edge/convert/
# reductions.py) flipped 41 % of a change head's top-1s, while rounding (XNNPACK rounds the float
# requantization once, the reference kernels' fixed-point one twice) flips the top-1 only where two
# classes are within a few output steps: at most 6 % of frames, on every head and CPU measured
# (docs/design/numerics.md). Hence a floor well between the two.
MIN_AGREEMENT = 80.0  # percent of frames whose top-1 XNNPACK and the reference kernels share


def outputs(model: Path | bytes, frames: np.ndarray, kernels_: str) -> np.ndarray:
    """Raw (quantized) output rows of `model` on `frames` with `kernels_` (kernels.KERNELS)."""
    return kernels.raw_outputs(kernels.interpreter(model, kernels_), frames) if len(frames) else np.zeros((0, 0), np.uint8)


def probabilities(model: Path | bytes, raw: np.ndarray) -> np.ndarray:
    """`raw` output rows of `model` dequantized to float32 probabilities."""
    from edge.model.contract import dequantize

    details = kernels.interpreter(model, "builtin").raw.get_output_details()[0]
    return dequantize(raw, details["quantization"]).astype(np.float32)


@dataclass(frozen=True)
class KernelAgreement:
    """XNNPACK on this CPU against the reference kernels on the same frames."""

    cpu: str
    frames: int
    top1_agreement: float  # percent
    max_diff: int  # largest difference of one output, in output steps
    min_agreement: float  # the gate's floor, percent

    @property
    def passed(self) -> bool:
        return self.top1_agreement >= self.min_agreement

    def failures(self) -> list[str]:
        if self.passed:
            return []
        return [
            f"XNNPACK on this CPU ({self.cpu}) gives the reference kernels' top-1 on only {self.top1_agreement:.1f}% of {self.frames} frames "
            f"(< {self.min_agreement:g}%; outputs up to {self.max_diff} steps apart): this CPU's XNNPACK computes the model otherwise"
        ]

    def summary(self) -> str:
        return (
            f"XNNPACK on this CPU ({self.cpu}) and the reference kernels: same top-1 on {self.top1_agreement:.1f}% of {self.frames} frames "
            f"(gate: >= {self.min_agreement:g}%), outputs up to {self.max_diff} steps apart"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"passed": self.passed}


def agreement(reference: np.ndarray, xnnpack: np.ndarray, min_agreement: float = MIN_AGREEMENT, step: float = 1.0) -> KernelAgreement:
    """From raw output rows, or from dequantized ones with their quantization `step`."""
    c = kernels.compare(reference, xnnpack, step)
    pct = round(100.0 * (c.frames - c.top1_differs) / c.frames, 2) if c.frames else 100.0
    return KernelAgreement(kernels.cpu_features(), c.frames, pct, c.max_diff, min_agreement)
