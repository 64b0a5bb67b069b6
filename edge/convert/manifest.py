"""Bind a converted model to its labels and a self-test frame: the manifest the daemon loads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge.errors import ModelError
from edge.fsutil import sha256_file, write_atomic
from edge.model.contract import CROP_FRACTION, NUM_CLASSES, top_k
from edge.model.interpreter import Interpreter
from edge.model.manifest import Manifest, SelfTest, manifest_path
from edge.model.preprocess import load_image
from edge.model.region import Crop


def make_manifest(
    model: Path,
    labels: tuple[str, ...],
    reference_images: list[Path],
    provenance: dict[str, Any] | None = None,
    crop_fraction: float = CROP_FRACTION,
    view_references: str | None = None,
) -> Manifest:
    """Bind a uint8-in/uint8-out model to its labels and a self-test frame.

    The self-test uses the reference image with the widest top-1/top-2 margin, so the check is
    robust to rounding differences between CPUs and runtime versions. `crop_fraction` is recorded:
    the crop the model was calibrated and evaluated with, which the device should use too.
    """
    interp = Interpreter(model, 1)
    best: tuple[float, SelfTest] | None = None
    for image in reference_images:
        frame = load_image(image, Crop(fraction=crop_fraction))
        first, second = top_k(interp.classify(frame), labels, 2)
        margin = first.score - second.score
        if best is None or margin > best[0]:
            best = (margin, SelfTest.from_frame(frame, first.class_index, first.label, first.score, image.name))
    if best is None:
        raise ModelError("no reference image for the self-test")
    return Manifest(
        model_sha256=sha256_file(model),
        model_bytes=Path(model).stat().st_size,
        labels=labels,
        input_shape=interp.input_shape,
        input_dtype=interp.input_dtype.name,
        output_shape=interp.output_shape,
        output_dtype=interp.output_dtype.name,
        crop_fraction=crop_fraction,
        provenance=provenance or {},
        self_test=best[1],
        view_references_png_base64=view_references,
    )


def write_manifest(model: Path, manifest: Manifest) -> None:
    write_atomic(manifest_path(model), manifest.to_json().encode("utf-8"))


def read_labels(path: Path) -> tuple[str, ...]:
    try:
        labels = tuple(line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines())
    except OSError as exc:
        raise ModelError(f"{path}: cannot read labels ({exc.strerror})") from exc
    if len(labels) != NUM_CLASSES:
        raise ModelError(f"{path}: {len(labels)} labels, expected {NUM_CLASSES} (class 0 = background)")
    return labels
