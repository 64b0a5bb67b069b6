"""The one TFLite runtime shim: ai_edge_litert, else the legacy tflite_runtime."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.errors import ModelError


@dataclass(frozen=True)
class Runtime:
    name: str  # distribution name: "ai-edge-litert" or "tflite-runtime"
    version: str
    interpreter_class: Any


def load_runtime() -> Runtime:
    """Import the interpreter lazily so `import edge` stays light on any machine."""
    try:
        from ai_edge_litert import interpreter as litert

        return Runtime("ai-edge-litert", _version("ai-edge-litert"), litert.Interpreter)
    except ImportError:
        pass
    try:
        from tflite_runtime import interpreter as legacy
    except ImportError as exc:
        raise ModelError(
            f"no TFLite runtime: install ai-edge-litert (pip install ai-edge-litert), or the legacy tflite-runtime with numpy<2 ({exc})"
        ) from exc
    return Runtime("tflite-runtime", _version("tflite-runtime"), legacy.Interpreter)


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


def make_interpreter(model: Path | bytes, threads: int = 1) -> Any:
    """An allocated interpreter with the default delegate (XNNPACK) applied."""
    runtime = load_runtime()
    try:
        if isinstance(model, bytes):
            interp = runtime.interpreter_class(model_content=model, num_threads=threads)
        else:
            interp = runtime.interpreter_class(model_path=str(model), num_threads=threads)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        name = "<bytes>" if isinstance(model, bytes) else str(model)
        raise ModelError(f"{name}: not a loadable TFLite model ({_first_line(exc)})") from exc
    return interp


def delegated_op_counts(interp: Any) -> tuple[dict[str, int], dict[str, int]]:
    """(delegated, not delegated) op counts by op name.

    The interpreter lists every original node plus one DELEGATE node per XNNPACK partition.
    A node runs outside XNNPACK when something that runs consumes its output: a graph output,
    a DELEGATE node, or (transitively) another node outside. Nodes inside a partition feed only
    each other, or produce the DELEGATE node's own output.
    """
    ops = [op for op in interp._get_ops_details() if op["op_name"] != "DELEGATE"]
    delegates = [op for op in interp._get_ops_details() if op["op_name"] == "DELEGATE"]
    produced_by_delegate = {int(t) for d in delegates for t in d["outputs"]}
    needed = {int(t) for d in delegates for t in d["inputs"]}
    needed |= {int(d["index"]) for d in interp.get_output_details()}
    outside: set[int] = set()
    changed = True
    while changed:
        changed = False
        for i, op in enumerate(ops):
            outs = {int(t) for t in op["outputs"]}
            if i not in outside and outs & needed and not outs <= produced_by_delegate:
                outside.add(i)
                needed |= {int(t) for t in op["inputs"]}
                changed = True
    inside_counts: dict[str, int] = {}
    outside_counts: dict[str, int] = {}
    for i, op in enumerate(ops):
        counts = outside_counts if i in outside else inside_counts
        counts[op["op_name"]] = counts.get(op["op_name"], 0) + 1
    return inside_counts, outside_counts


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
