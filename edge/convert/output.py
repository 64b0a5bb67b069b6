"""Writing a model the converter or `train` made: the XNNPACK check, then its manifest and the model, atomically."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edge.errors import ModelError, SinkError


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """A full disk or a vanished folder while writing an output: one clear line, not a traceback."""
    try:
        yield
    except OSError as exc:
        raise SinkError(f"{path}: cannot write ({exc.strerror or exc})") from exc


def check_delegation(model: bytes, what: str = "converted model") -> dict[str, int]:
    """The ops that run outside XNNPACK; a convolution among them means no model is written."""
    from edge.model.engine import REQUIRED_DELEGATED
    from edge.model.runtime import delegated_op_counts, make_interpreter

    _, outside = delegated_op_counts(make_interpreter(model, 1))
    missing = [op for op in REQUIRED_DELEGATED if outside.get(op)]
    if missing:
        raise ModelError(f"{what} runs {missing} outside XNNPACK; refusing to write it")
    return outside


def write_model(
    out: Path,
    model: bytes,
    labels: tuple[str, ...],
    refs: list[Path],
    provenance: dict[str, Any],
    crop_fraction: float,
    view_references: str | None = None,
    light_range: tuple[float, float] | None = None,
) -> None:
    """Manifest first (its self-test frame: the reference image with the widest margin), then the
    model, each atomically; the Engine must accept the pair, else neither is left behind.
    `view_references`: a fixed-camera model's view, for the manifest (edge/train/view.py);
    `light_range`: the training frames' brightness, for the daemon's light check (edge/train/conditions.py)."""
    from edge.convert.manifest import make_manifest, write_manifest
    from edge.fsutil import write_atomic
    from edge.model.engine import Engine
    from edge.model.manifest import manifest_path

    with writing(out):
        fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tflite", dir=out.parent)
    tmp = Path(tmp_name)
    try:
        with writing(out), os.fdopen(fd, "wb") as f:
            f.write(model)
        manifest = make_manifest(tmp, labels, refs, provenance, crop_fraction=crop_fraction, view_references=view_references, light_range=light_range)
        with writing(manifest_path(out)):
            write_manifest(out, manifest)
        with writing(out):
            write_atomic(out, model)
    except BaseException:
        manifest_path(out).unlink(missing_ok=True)  # it would name a model that was never written
        raise
    finally:
        tmp.unlink(missing_ok=True)
    try:
        Engine(out, threads=1)
    except ModelError:
        out.unlink(missing_ok=True)
        manifest_path(out).unlink(missing_ok=True)
        raise
