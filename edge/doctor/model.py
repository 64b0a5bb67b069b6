"""The TFLite runtime, XNNPACK taking every convolution of the configured model, its manifest and self-test."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edge.doctor.check import FAIL, OK, SKIP, WARN, Check, Context
from edge.errors import EdgeError

if TYPE_CHECKING:
    from edge.model.engine import Engine

RUNTIME_FIX = "pip install ai-edge-litert into the venv (the legacy tflite-runtime 2.14 has no int8 XNNPACK and needs numpy<2)"


def checks(ctx: Context) -> list[Check]:
    from edge.model.runtime import load_runtime

    try:
        runtime = load_runtime()
    except EdgeError as exc:
        return [Check("runtime", FAIL, str(exc), RUNTIME_FIX), Check("model", SKIP, "no TFLite runtime to load it with")]
    checks = [
        Check(
            "runtime",
            OK if runtime.name == "ai-edge-litert" else WARN,
            f"{runtime.name} {runtime.version}",
            "" if runtime.name == "ai-edge-litert" else RUNTIME_FIX,
        )
    ]
    if ctx.config is None:
        return [*checks, Check("model", SKIP, "the config did not load: no model to check")]
    return checks + _model(ctx)


def _kernels(engine: Engine, require_xnnpack: bool) -> Check:
    """XNNPACK against the reference kernels' outputs on the manifest's frames (the Engine's check at load)."""
    check = engine.kernel_check
    if check is None:
        return Check("kernels", SKIP, "no XNNPACK to check against TFLite's reference kernels")
    if check.agrees:
        return Check("kernels", OK, check.describe())
    fix = "convert or train the model again with this version of mnv1-edge"
    if require_xnnpack:
        return Check(
            "kernels",
            FAIL,
            f"{check.describe()}: the daemon refuses the model (model.require_xnnpack = true)",
            fix + ", or set model.require_xnnpack = false",
        )
    return Check("kernels", WARN, f"{check.describe()}: the daemon runs the built-in kernels instead, more slowly", fix)


def _model(ctx: Context) -> list[Check]:
    from edge.model.engine import REQUIRED_DELEGATED, Engine

    assert ctx.config is not None
    m = ctx.config.model
    try:
        engine = Engine(Path(m.path), threads=m.threads, expected_sha256=m.sha256, self_test=False, require_xnnpack=False)
    except EdgeError as exc:
        fix = (
            "copy the converted model and its manifest (MODEL.tflite.json, from `mnv1-edge convert`) to model.path, or fix model.path / model.sha256"
        )
        return [Check("model", FAIL, str(exc), fix)]
    manifest = engine.manifest
    out = [Check("model", OK, f"{m.path}: sha256 {engine.sha256[:12]}…, manifest ok, {len(engine.labels)} classes")]
    delegated = ", ".join(f"{engine.delegated.get(op, 0)} {op}" for op in REQUIRED_DELEGATED)
    missing = [op for op in REQUIRED_DELEGATED if engine.not_delegated.get(op) or not engine.delegated.get(op)]
    if missing:
        detail = f"XNNPACK did not take {', '.join(missing)} (on the CPU: {engine.not_delegated}) with {engine.runtime.name} {engine.runtime.version}"
        status = FAIL if m.require_xnnpack else WARN
        out.append(Check("xnnpack", status, detail + ("" if m.require_xnnpack else "; model.require_xnnpack = false runs it slower"), RUNTIME_FIX))
    else:
        out.append(Check("xnnpack", OK, f"XNNPACK takes every convolution ({delegated}); {sum(engine.not_delegated.values())} other ops on the CPU"))
    out.append(_kernels(engine, m.require_xnnpack))
    try:
        ms = engine.run_self_test()
    except EdgeError as exc:
        return [*out, Check("self-test", FAIL, str(exc), "re-copy the model (a corrupt file) or reinstall the runtime")]
    st = manifest.self_test
    assert st is not None
    return [*out, Check("self-test", OK, f"reference image {st.source} → {st.top1} ({st.label}) in {ms:.1f} ms")]
