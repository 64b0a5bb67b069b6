"""The one TFLite runtime shim: ai_edge_litert, else the legacy tflite_runtime."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.errors import ConfigError, ModelError

log = logging.getLogger(__name__)

# Environment variable that forces one runtime (a device with both installed, or the arm64 test
# stage proving each); unset = ai-edge-litert, else tflite-runtime.
RUNTIME_ENV = "MNV1_EDGE_RUNTIME"
RUNTIMES = ("ai-edge-litert", "tflite-runtime")


@dataclass(frozen=True)
class Runtime:
    name: str  # distribution name: "ai-edge-litert" or "tflite-runtime"
    version: str
    interpreter_class: Any


def load_runtime(name: str | None = None) -> Runtime:
    """Import the interpreter lazily so `import edge` stays light on any machine.

    `name` (or $MNV1_EDGE_RUNTIME) forces one runtime; by default ai-edge-litert is preferred and
    the legacy tflite-runtime is the fallback.
    """
    wanted = name if name is not None else os.environ.get(RUNTIME_ENV, "").strip()
    if wanted and wanted.replace("_", "-") not in RUNTIMES:
        raise ConfigError(f"{RUNTIME_ENV}={wanted!r}: expected one of {', '.join(RUNTIMES)} (or unset for the default)")
    wanted = wanted.replace("_", "-")
    errors: list[str] = []
    for candidate in (wanted,) if wanted else RUNTIMES:
        try:
            return _import(candidate)
        except ImportError as exc:
            errors.append(f"{candidate}: {_first_line(exc)}")
    if wanted:
        raise ModelError(f"{RUNTIME_ENV}={wanted} but it is not importable ({errors[0]}); install it or unset {RUNTIME_ENV}")
    raise ModelError(
        f"no TFLite runtime: install ai-edge-litert (pip install ai-edge-litert), or the legacy tflite-runtime with numpy<2 ({'; '.join(errors)})"
    )


def _import(name: str) -> Runtime:
    if name == "ai-edge-litert":
        from ai_edge_litert import interpreter as litert

        return Runtime(name, _version(name), litert.Interpreter)
    from tflite_runtime import interpreter as legacy

    version = _version(name)
    _check_legacy_numpy(version)
    return Runtime(name, version, legacy.Interpreter)


def _check_legacy_numpy(version: str) -> None:
    """tflite-runtime <= 2.14 is built against NumPy 1.x: it imports under NumPy 2 but its
    Interpreter then dies with a SystemError, so refuse it up front with the fix."""
    import numpy as np

    if _major_minor(version) <= (2, 14) and _major_minor(np.__version__) >= (2, 0):
        raise ModelError(
            f"tflite-runtime {version} needs numpy<2 but numpy {np.__version__} is installed: pip install 'numpy<2', or use ai-edge-litert"
        )


def _major_minor(version: str) -> tuple[int, int]:
    major, minor, *_ = [*(int(p) if p.isdigit() else 0 for p in version.split(".")[:2]), 0, 0]
    return major, minor


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


def make_interpreter(
    model: Path | bytes,
    threads: int = 1,
    runtime: Runtime | None = None,
    builtin_kernels: bool = False,
    preserve_all_tensors: bool = False,
    reference_kernels: bool = False,
) -> Any:
    """An allocated interpreter with the default delegate (XNNPACK) applied.

    `builtin_kernels`: TFLite's own optimized kernels instead (no XNNPACK), what the converter
    edits with and the Engine falls back to; `reference_kernels`: TFLite's plain reference kernels
    (BUILTIN_REF: integer code that computes the same on every CPU, several times slower), what the
    gates measure; `preserve_all_tensors` keeps every intermediate readable.
    """
    runtime = runtime or load_runtime()
    options: dict[str, Any] = {"num_threads": threads}
    if builtin_kernels or reference_kernels:
        resolver = sys.modules[runtime.interpreter_class.__module__].OpResolverType
        options["experimental_op_resolver_type"] = resolver.BUILTIN_REF if reference_kernels else resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    if preserve_all_tensors:
        options["experimental_preserve_all_tensors"] = True
    try:
        with runtime_chatter_to_log():
            if isinstance(model, bytes):
                interp = runtime.interpreter_class(model_content=model, **options)
            else:
                interp = runtime.interpreter_class(model_path=str(model), **options)
            interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        name = "<bytes>" if isinstance(model, bytes) else str(model)
        raise ModelError(f"{name}: not a loadable TFLite model ({_first_line(exc)})") from exc
    return interp


def tflite_schema() -> Any:
    """The TFLite flatbuffer schema classes, which ai-edge-litert ships (the converter edits models with them)."""
    from ai_edge_litert import schema_py_generated as schema

    return schema


@contextmanager
def runtime_chatter_to_log() -> Iterator[None]:
    """Hold what the C++ runtime prints on fd 2 ("INFO: Created TensorFlow Lite XNNPACK delegate
    for CPU.") and log its INFO lines at debug, so they reach neither the terminal nor the journal
    (where they had no priority) unless --log-level debug; any other line is passed on to stderr."""
    sys.stderr.flush()
    with tempfile.TemporaryFile() as held:
        saved = os.dup(2)
        try:
            os.dup2(held.fileno(), 2)
            yield
        finally:  # also when the model fails to load: its ERROR lines explain why
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            for line in held.read().decode("utf-8", "replace").splitlines():
                if line.startswith("INFO: "):
                    log.debug("runtime: %s", line[6:])
                elif line:
                    print(line, file=sys.stderr)


def delegated_op_counts(interp: Any) -> tuple[dict[str, int], dict[str, int]]:
    """(delegated, not delegated) op counts by op name.

    The interpreter lists every original node plus one DELEGATE node per XNNPACK partition.
    A node runs outside XNNPACK when something that runs consumes its output: a graph output,
    a DELEGATE node, or (transitively) another node outside. Nodes inside a partition feed only
    each other, or produce the DELEGATE node's own output.
    """
    details = interp._get_ops_details()
    ops = [op for op in details if op["op_name"] != "DELEGATE"]
    delegates = [op for op in details if op["op_name"] == "DELEGATE"]
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
