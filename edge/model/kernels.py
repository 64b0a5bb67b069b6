"""Whether XNNPACK computes a model as TFLite's own kernels do on this CPU: outputs, their comparison, the CPU's features."""

from __future__ import annotations

import platform
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.model.interpreter import Interpreter

# XNNPACK picks its int8 micro-kernels by the CPU's features, and they need not compute what TFLite's
# reference kernels do: on x86 without VNNI its int8 sum wrapped around in 16-bit lanes (edge/convert/
# reductions.py), and everywhere its float requantization rounds a step differently from TFLite's
# fixed-point one now and then, which a deep network can add up (docs/design/numerics.md). The Engine runs a
# model's probe frames through XNNPACK at load against the reference kernels' outputs its manifest
# records (TFLite's optimized built-in kernels are no yardstick: on a Cortex-A53 they differed from the
# reference kernels by up to 41 steps on a head's probe frames); `convert` and `train` measure both.

KERNELS = ("xnnpack", "builtin", "reference")
# The bound on a probe frame's output difference (manifest.KernelProbes) lies between these, in
# output steps: rounding alone moved the probes' outputs by up to 40 steps of 256 (docs/design/numerics.md);
# more than a quarter of the range is not rounding, even where the converting CPU measured more.
MIN_BOUND, MAX_BOUND = 8, 64
# A top-1 that differs while both kernels' top-1s lead their runner-up by this many output steps is
# no near-tie: rounding flipped top-1s only where one of them led by at most 70 steps, on every model
# kind and CPU measured; the x86 sum overflow flipped 80 of its 83 with both leading by more.
DECISIVE_LEAD = 96


@dataclass(frozen=True)
class Comparison:
    """Two kernels' raw outputs on the same frames."""

    frames: int
    top1_differs: int  # frames whose top-1 class differs (ties go to the lower class index, as top_k)
    max_diff: int  # largest difference of one output, in steps of the model's output type
    decisive: int = 0  # of top1_differs, those where both top-1s lead by DECISIVE_LEAD steps or more

    def describe(self) -> str:
        return f"top-1 differs on {self.top1_differs} of {self.frames} frames, outputs by up to {self.max_diff} steps"


def compare(a: np.ndarray, b: np.ndarray, step: float = 1.0) -> Comparison:
    """Rows = frames, columns = the model's raw (quantized) outputs, or dequantized ones whose
    quantization step is `step`."""
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64)) / step
    differs = np.argmax(a, axis=1) != np.argmax(b, axis=1)
    decisive = differs & (np.minimum(_lead(a), _lead(b)) / step >= DECISIVE_LEAD - 0.5)
    return Comparison(len(a), int(differs.sum()), int(np.rint(diff.max())) if diff.size else 0, int(decisive.sum()))


def _lead(rows: np.ndarray) -> np.ndarray:
    """How far each row's top output is above its second."""
    top2 = np.sort(rows.astype(np.float64), axis=1)[:, -2:]
    return np.asarray(top2[:, 1] - top2[:, 0]) if rows.shape[1] > 1 else np.zeros(len(rows))


def raw_outputs(interp: Interpreter, frames: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """Each frame's raw output row, stacked (frames x outputs)."""
    rows = []
    for frame in frames:
        interp.set_input(frame)
        interp.invoke()
        rows.append(interp.output())
    return np.stack(rows)


def interpreter(model: Path | bytes, kernels: str, threads: int = 1) -> Interpreter:
    """An interpreter running `kernels` (one of KERNELS)."""
    if kernels not in KERNELS:
        raise ValueError(f"kernels {kernels!r}: expected one of {', '.join(KERNELS)}")
    return Interpreter(model, threads, builtin_kernels=kernels == "builtin", reference_kernels=kernels == "reference")


def cpu_features(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU features that decide XNNPACK's int8 kernels, in one phrase: 'x86_64 AVX2, no AVX-512,
    no VNNI' or 'aarch64 asimd dotprod'. (Under qemu-user this is the host's /proc/cpuinfo.)"""
    machine = platform.machine()
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return machine
    fields: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip().lower(), value.split())
    if "flags" in fields:  # x86
        flags = set(fields["flags"])
        level = next((name for flag, name in _X86 if flag in flags), "no SSSE3")
        avx512 = "AVX-512" if "avx512f" in flags else "no AVX-512"
        vnni = "VNNI" if flags & {"avx512_vnni", "avx_vnni"} else "no VNNI"
        return f"{machine} {level}, {avx512}, {vnni}"
    if "features" in fields:  # Arm
        features = set(fields["features"])
        part = _ARM_PARTS.get(" ".join(fields.get("cpu part", [])), "")
        extras = [name for flag, name in (("asimddp", "dotprod"), ("i8mm", "i8mm"), ("sve", "sve")) if flag in features]
        return " ".join(x for x in (machine, part, "asimd" if "asimd" in features else "no asimd", *extras) if x)
    return machine


_X86 = (("avx2", "AVX2"), ("avx", "AVX"), ("sse4_1", "SSE4.1"), ("ssse3", "SSSE3"))
_ARM_PARTS = {"0xd03": "Cortex-A53", "0xd08": "Cortex-A72", "0xd0b": "Cortex-A76"}


@dataclass(frozen=True)
class KernelCheck:
    """The Engine's check at load: XNNPACK against the reference kernels' outputs on the manifest's frames."""

    comparison: Comparison
    bound: int  # largest output difference accepted (the manifest's, else MIN_BOUND)
    cpu: str  # cpu_features()
    ms: float  # what the check added to the start-up

    @property
    def agrees(self) -> bool:
        """Every output within the bound and no decisive top-1 flip. A top-1 that rounding flips on a
        near-tie probe is no disagreement: where a class's images all lead narrowly, a probe does too
        (manifest PROBE_MARGIN), and on the corridor footage a features head's own write-time check
        refused its model for one such frame, outputs 6 steps apart with 16 allowed."""
        return self.comparison.decisive == 0 and self.comparison.max_diff <= self.bound

    def describe(self) -> str:
        c = self.comparison
        verdict = "agrees" if self.agrees else "DISAGREES"
        return (
            f"XNNPACK {verdict} with TFLite's reference kernels on {c.frames} frames (top-1 differs on {c.top1_differs}, "
            f"outputs up to {c.max_diff} steps apart, bound {self.bound}) on {self.cpu}; checked in {self.ms:.0f} ms"
        )
