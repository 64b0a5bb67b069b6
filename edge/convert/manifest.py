"""Bind a converted model to its labels and a self-test frame: the manifest the daemon loads."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import ModelError
from edge.fsutil import sha256_file, write_atomic
from edge.model import kernels
from edge.model.contract import CROP_FRACTION, NUM_CLASSES, top_k
from edge.model.interpreter import Interpreter
from edge.model.manifest import KernelProbes, Manifest, SelfTest, manifest_path
from edge.model.preprocess import load_image
from edge.model.region import Crop

# Frames besides the self-test's that the Engine's kernel check runs at load: an XNNPACK invoke each
# (7 M instructions for the stock model on a Pi 3's A53, 21 M for the change head; docs/design/numerics.md).
PROBES = 5
# Top-1 lead (probability) of a probe frame: rounding flipped 2-class heads' top-1s only where both
# kernels' leads were under 0.28; the x86 sum overflow flipped most where both led by over 0.5 (docs/design/numerics.md).
PROBE_MARGIN = 0.5
BOUND_MARGIN = 4  # output steps added to the measured differences: other CPUs' kernels round otherwise again


def make_manifest(
    model: Path,
    labels: tuple[str, ...],
    reference_images: list[Path],
    provenance: dict[str, Any] | None = None,
    crop_fraction: float = CROP_FRACTION,
    view_references: str | None = None,
    probes: int = PROBES,
    light_range: tuple[float, float] | None = None,
) -> Manifest:
    """Bind a uint8-in/uint8-out model to its labels, a self-test frame and the kernel check's probes.

    The self-test uses the reference image with the widest top-1/top-2 margin, so the check is
    robust to rounding differences between CPUs and runtime versions; its top-1 is the built-in
    kernels' (integer code that computes the same on every CPU). `probes` more, of every predicted
    class in turn, become the probe frames of the Engine's kernel check (_probe_order). `crop_fraction`
    is recorded: the crop the model was calibrated and evaluated with, which the device should use too;
    `light_range` too: the training frames' brightness (mean luma, 5th and 95th percentile), which
    the daemon compares the camera's frames with.
    """
    interp = Interpreter(model, 1, builtin_kernels=True)
    ranked: list[tuple[float, int, np.ndarray, SelfTest]] = []
    for image in reference_images:
        frame = load_image(image, Crop(fraction=crop_fraction))
        first, second = top_k(interp.classify(frame), labels, 2)
        ranked.append(
            (
                first.score - second.score,
                first.class_index,
                frame,
                SelfTest.from_frame(frame, first.class_index, first.label, first.score, image.name),
            )
        )
    if not ranked:
        raise ModelError("no reference image for the self-test")
    ranked.sort(key=lambda r: -r[0])  # stable: equal margins keep the images' order
    frames = [r[2] for r in ranked]
    chosen = _probe_order([r[0] for r in ranked], [r[1] for r in ranked])[: probes + 1]
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
        self_test=ranked[0][3],
        view_references_png_base64=view_references,
        kernel_check=kernel_probes(model, [frames[i] for i in chosen]) if len(chosen) > 1 else None,
        light_range=None if light_range is None else (float(light_range[0]), float(light_range[1])),
    )


def _probe_order(margins: list[float], classes: list[int]) -> list[int]:
    """Indices of the self-test's image (the widest margin: `margins` come sorted, widest first) and
    then of the probes: per predicted class in turn, the image with the narrowest margin that is still
    PROBE_MARGIN wide (far from the top-1 flips rounding makes, yet not saturated: a kernel that computes
    otherwise shows there), then the next narrowest; images below PROBE_MARGIN only when no other is
    left, the widest of them first (the further from a tie, the less rounding flips it)."""
    queues: dict[int, list[int]] = {}
    wide = [m >= PROBE_MARGIN for m in margins]
    for i in sorted(range(1, len(margins)), key=lambda i: (not wide[i], margins[i] if wide[i] else -margins[i])):
        queues.setdefault(classes[i], []).append(i)
    order = [0]
    while any(queues.values()):
        for queue in queues.values():
            if queue:
                order.append(queue.pop(0))
    return order


def kernel_probes(model: Path, frames: list[np.ndarray]) -> KernelProbes:
    """The probe frames (all but the first, the self-test's), the reference kernels' outputs on all
    of them, and the Engine's bound: twice the largest output difference of XNNPACK here from them,
    plus a margin for other CPUs' rounding, within kernels.MIN_BOUND..MAX_BOUND (docs/design/numerics.md)."""
    outputs = {k: kernels.raw_outputs(kernels.interpreter(model, k), frames) for k in kernels.KERNELS}
    measured: dict[str, Any] = {"cpu": kernels.cpu_features(), "frames": len(frames)}
    for kind in ("xnnpack", "builtin"):
        measured[f"{kind}_vs_reference"] = asdict(kernels.compare(outputs[kind], outputs["reference"]))
    bound = min(kernels.MAX_BOUND, max(kernels.MIN_BOUND, 2 * measured["xnnpack_vs_reference"]["max_diff"] + BOUND_MARGIN))
    return KernelProbes.from_frames(frames[1:], bound, outputs["reference"], measured)


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
