"""A trained model on the later frames, twice: XNNPACK as the daemon runs it, and TFLite's reference kernels (what Arm computes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.footage.prepare import CLASSES

# Two kernels, because on an x86 CPU without VNNI XNNPACK's int8 multiply-adds can saturate where
# Arm's do not (docs/design/footage-benchmark.md): the reference kernels are what a Pi computes, within a
# rounding step; XNNPACK here is what this machine's daemon would say.
KERNELS = ("reference", "xnnpack")


def measure(model: Path, frames: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """Per kernel: accuracy, false 'present' and miss rates in percent, and the predictions."""
    from edge.errors import ModelError
    from edge.model.engine import Engine
    from edge.model.interpreter import Interpreter

    engine = Engine(model, self_test=False)  # the daemon's own path: manifest and contract checked, XNNPACK required
    out: dict[str, Any] = {}
    try:
        engine.run_self_test()
    except ModelError as exc:  # the daemon would refuse this model here; measure it all the same, and say so
        out["self_test"] = str(exc)
    if engine.manifest.crop_fraction != 1.0:
        raise ValueError(f"{model}: crop_fraction {engine.manifest.crop_fraction}; the footage frames are prepared for 1.0 (captured frames)")
    # The model's class order is its manifest's; the benchmark's labels are CLASSES.
    order = np.array([list(engine.labels).index(c) for c in CLASSES])
    reference = Interpreter(model, builtin_kernels=True)
    runs = {"reference": reference.classify, "xnnpack": engine.classify}
    for kernel in KERNELS:
        probs = np.stack([runs[kernel](frame)[order] for frame in frames])
        out[kernel] = rates(np.argmax(probs, axis=1), truth)  # ties go to the lower index, "absent", as on the device
    same = np.array(out["reference"]["predicted"]) == np.array(out["xnnpack"]["predicted"])
    out["kernels_agree"] = round(100.0 * float(np.mean(same)), 2)
    return out


def rates(predicted: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    absent, present = truth == 0, truth == 1
    return {
        "accuracy": _pct(np.mean(predicted == truth)),
        "false_present": _pct(np.mean(predicted[absent] == 1)) if absent.any() else None,
        "miss": _pct(np.mean(predicted[present] == 0)) if present.any() else None,
        "predicted": [int(p) for p in predicted],
    }


def _pct(x: Any) -> float:
    return round(100.0 * float(x), 2)
