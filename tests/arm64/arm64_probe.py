"""Classify a list of images in one process and print the model's raw outputs as JSON.

Run on the host and inside the arm64 rootfs (under qemu-user) by test_arm64.py, which compares the
runs: one process per (architecture, runtime, CPU) pays the emulated start-up once. It uses the
interpreter the Engine uses (edge.model.runtime, so $MNV1_EDGE_RUNTIME picks the runtime) and the same
preprocessing, but not the Engine itself, so a runtime the Engine refuses is still measured.
Usage: python arm64_probe.py [--no-xnnpack] MODEL IMAGE... > result.json
(--no-xnnpack: TFLite's built-in kernels only, the control that explains runtime differences)
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
import time
from importlib.metadata import version
from pathlib import Path


def main(argv: list[str]) -> int:
    import numpy as np

    from edge.model.contract import top_k
    from edge.model.preprocess import load_image
    from edge.model.runtime import delegated_op_counts, load_runtime, make_interpreter

    no_xnnpack = argv[:1] == ["--no-xnnpack"]
    model, images = Path(argv[no_xnnpack]), [Path(a) for a in argv[no_xnnpack + 1 :]]
    runtime = load_runtime()
    if no_xnnpack:
        module = sys.modules[runtime.interpreter_class.__module__]
        resolver = module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        interp = runtime.interpreter_class(model_path=str(model), num_threads=1, experimental_op_resolver_type=resolver)
        interp.allocate_tensors()
    else:
        interp = make_interpreter(model, 1)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    scale, zero_point = out["quantization"]
    classes = tuple(str(i) for i in range(int(out["shape"][-1])))
    delegated, not_delegated = delegated_op_counts(interp)
    results = []
    invoke_s = 0.0
    for image in images:
        frame = load_image(image)
        interp.set_tensor(inp["index"], frame[None])
        t0 = time.perf_counter()
        interp.invoke()
        invoke_s += time.perf_counter() - t0
        raw = interp.get_tensor(out["index"])[0]
        scores = (scale * (raw.astype(np.int32) - zero_point)).astype(np.float32)
        results.append(
            {
                "image": f"{image.parent.name}/{image.name}",
                "frame_sha256": hashlib.sha256(frame.tobytes()).hexdigest(),
                # the uint8 output itself: equal bytes mean equal scores, top-1 and top-5
                "raw": raw.tobytes().hex(),
                "top5": [[p.class_index, p.score] for p in top_k(scores, classes, 5)],
            }
        )
    report = {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "runtime": f"{runtime.name} {runtime.version}" + (" without XNNPACK" if no_xnnpack else ""),
        "numpy": version("numpy"),
        "pillow": version("pillow"),
        "delegated_ops": delegated,
        "cpu_ops": not_delegated,
        "invoke_ms_mean": round(1e3 * invoke_s / max(len(images), 1), 3),
        "results": results,
    }
    json.dump(report, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
