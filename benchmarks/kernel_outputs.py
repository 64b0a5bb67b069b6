"""Run models on saved frames with the chosen TFLite kernels; save their raw outputs and the Engine's kernel check (no TensorFlow needed).

Run by benchmarks/numerics.py and the kernel tests on the host, under `qemu-x86_64-static -cpu
Haswell` and inside the arm64 test rootfs (under qemu-aarch64 as a Cortex-A53 or A76), so that every
platform computes the same frames. Usage:
    python benchmarks/kernel_outputs.py OUT.npz KERNELS MODEL=FRAMES.npy ...
KERNELS: a comma-separated subset of xnnpack, builtin, reference; with "engine" among them, each
model (with its manifest) is also loaded by the Engine, whose kernel check's verdict is saved.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path
from typing import Any


def main(argv: list[str]) -> int:
    import numpy as np

    from edge.model import kernels
    from edge.model.runtime import delegated_op_counts, load_runtime

    out, wanted, pairs = Path(argv[0]), argv[1].split(","), [a.split("=", 1) for a in argv[2:]]
    runtime = load_runtime()
    arrays: dict[str, np.ndarray] = {}
    info: dict[str, Any] = {"machine": platform.machine(), "cpu": kernels.cpu_features(), "runtime": f"{runtime.name} {runtime.version}"}
    for model, frames_file in pairs:
        name, frames = Path(model).stem, np.load(frames_file)
        if "engine" in wanted:
            info[f"{name}/engine"] = engine_check(Path(model))
        for kind in (k for k in wanted if k in kernels.KERNELS):
            interp = kernels.interpreter(Path(model), kind)
            t0 = time.perf_counter()
            arrays[f"{name}/{kind}"] = kernels.raw_outputs(interp, frames)
            info[f"{name}/{kind}/ms"] = round((time.perf_counter() - t0) * 1e3 / max(len(frames), 1), 2)
            if kind == "xnnpack":
                info[f"{name}/delegated"] = delegated_op_counts(interp.raw)[0]
        print(f"{model}: {len(frames)} frames, {', '.join(wanted)}", file=sys.stderr, flush=True)
    np.savez_compressed(out, **{"info": np.array(json.dumps(info)), **arrays})  # type: ignore[arg-type]  # numpy types **kwds as allow_pickle
    return 0


def engine_check(model: Path) -> dict[str, Any]:
    """The Engine's kernel check at load (model.require_xnnpack = false: it falls back rather than refuses)."""
    from dataclasses import asdict

    from edge.model.engine import Engine

    engine = Engine(model, 1, require_xnnpack=False)
    check = engine.kernel_check
    return {"kernels": engine.kernels, "check": None if check is None else asdict(check) | {"agrees": check.agrees}}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
