"""The sidecar manifest that travels with a model: labels, input contract, provenance, self-test."""

# `MODEL.tflite.json` sits next to `MODEL.tflite` and records the model's sha256, so the daemon can
# refuse a manifest that belongs to another model file.

from __future__ import annotations

import base64
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import ModelError
from edge.fsutil import sha256_file
from edge.model import light, viewref
from edge.model.contract import CROP_FRACTION, INPUT_SHAPE, NUM_CLASSES

FORMAT = "mnv1-edge-manifest/1"


@dataclass(frozen=True)
class SelfTest:
    """A preprocessed reference frame and the top-1 the model gave it at conversion time."""

    image_png_base64: str
    top1: int
    label: str
    score: float
    source: str  # which image it was made from

    def frame(self, where: str = "manifest") -> np.ndarray:
        """The reference frame; a damaged one is the manifest's fault, named as such."""
        import binascii

        from PIL import Image

        try:
            with Image.open(io.BytesIO(base64.b64decode(self.image_png_base64, validate=True))) as img:
                if img.size != (128, 128):  # checked before decoding: a tampered PNG may declare any size
                    raise ModelError(f"{where}: self-test image is {img.size[0]}x{img.size[1]}, expected 128x128; re-run `mnv1-edge convert`")
                frame = np.asarray(img.convert("RGB"))
        except (OSError, ValueError, binascii.Error, Image.DecompressionBombError) as exc:
            raise ModelError(f"{where}: self_test.image_png_base64 is not a readable PNG ({exc}); re-run `mnv1-edge convert`") from exc
        return frame

    @staticmethod
    def from_frame(frame: np.ndarray, top1: int, label: str, score: float, source: str) -> SelfTest:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, format="PNG", optimize=True)
        return SelfTest(base64.b64encode(buf.getvalue()).decode("ascii"), top1, label, score, source)


@dataclass(frozen=True)
class KernelProbes:
    """Frames the Engine runs through XNNPACK at load (after the self-test frame), what TFLite's
    reference kernels output on them all (integer code that computes the same on every CPU), and
    how far XNNPACK may differ: `bound` output steps, set at conversion from what the kernels
    measured there (`measured`, with the CPU they ran on)."""

    frames_png_base64: str  # N 128x128 RGB frames side by side in one PNG strip
    bound: int
    reference_outputs_hex: tuple[str, ...] = ()  # raw output rows, hex: the self-test frame's, then each probe's
    measured: dict[str, Any] = field(default_factory=dict)

    def reference_outputs(self, where: str = "manifest") -> np.ndarray | None:
        """The reference kernels' raw output rows (uint8), or None in a manifest without them."""
        if not self.reference_outputs_hex:
            return None
        try:
            rows = [np.frombuffer(bytes.fromhex(row), np.uint8) for row in self.reference_outputs_hex]
        except ValueError as exc:
            raise ModelError(f"{where}: kernel_check.reference_outputs_hex is not hex ({exc}); re-run `mnv1-edge convert`") from exc
        if len({len(r) for r in rows}) != 1:
            raise ModelError(f"{where}: kernel_check.reference_outputs_hex rows differ in length; re-run `mnv1-edge convert`")
        return np.stack(rows)

    def frames(self, where: str = "manifest") -> list[np.ndarray]:
        """The probe frames; a damaged strip is the manifest's fault, named as such."""
        import binascii

        from PIL import Image

        side = INPUT_SHAPE[1]
        try:
            with Image.open(io.BytesIO(base64.b64decode(self.frames_png_base64, validate=True))) as img:
                if img.size[1] != side or img.size[0] % side or img.size[0] > 64 * side:  # checked before decoding
                    raise ModelError(f"{where}: kernel_check frames are {img.size[0]}x{img.size[1]}, expected 128 high; re-run `mnv1-edge convert`")
                strip = np.asarray(img.convert("RGB"))
        except (OSError, ValueError, binascii.Error, Image.DecompressionBombError) as exc:
            raise ModelError(f"{where}: kernel_check.frames_png_base64 is not a readable PNG ({exc}); re-run `mnv1-edge convert`") from exc
        return list(np.split(strip, strip.shape[1] // side, axis=1))

    @staticmethod
    def from_frames(frames: list[np.ndarray], bound: int, reference: np.ndarray, measured: dict[str, Any]) -> KernelProbes:
        """`frames`: the probes (not the self-test's); `reference`: the raw output rows of the self-test frame and of each probe."""
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(np.concatenate(frames, axis=1)).save(buf, format="PNG", optimize=True)
        rows = tuple(np.asarray(row, np.uint8).tobytes().hex() for row in reference)
        return KernelProbes(base64.b64encode(buf.getvalue()).decode("ascii"), bound, rows, measured)


@dataclass(frozen=True)
class Manifest:
    model_sha256: str
    model_bytes: int
    labels: tuple[str, ...]
    input_shape: tuple[int, ...] = INPUT_SHAPE
    input_dtype: str = "uint8"
    output_shape: tuple[int, ...] = (1, NUM_CLASSES)
    output_dtype: str = "uint8"
    crop_fraction: float = CROP_FRACTION  # the crop the model was calibrated and evaluated with
    provenance: dict[str, Any] = field(default_factory=dict)
    self_test: SelfTest | None = None
    # A fixed-camera model's view (edge/model/viewref.py, edge/sources/moved.py): K grey 64x64 tiles in one PNG strip.
    view_references_png_base64: str | None = None
    # Probe frames and the bound of the Engine's check of XNNPACK against the built-in kernels
    # (edge/model/kernels.py); None in manifests written before it: the self-test frame alone, kernels.MIN_BOUND.
    kernel_check: KernelProbes | None = None
    # The training frames' brightness, [5th, 95th percentile] of their mean luma (0-255), for the
    # daemon's light check (edge/model/light.py, edge/sources/light.py); None: not recorded.
    light_range: tuple[float, float] | list[float] | None = None
    format: str = FORMAT

    def to_json(self) -> str:
        data = asdict(self)
        data["labels"] = list(self.labels)
        if self.light_range is not None:
            data["light_range"] = [float(v) for v in self.light_range]
        for optional in ("view_references_png_base64", "kernel_check", "light_range"):
            if data[optional] is None:
                del data[optional]
        return json.dumps(data, indent=1, sort_keys=True) + "\n"

    def view_references(self, where: str = "manifest") -> np.ndarray | None:
        """K x 64 x 64 float32 grey references, or None; a damaged strip is the manifest's fault."""
        if self.view_references_png_base64 is None:
            return None
        try:
            return viewref.decode(self.view_references_png_base64)
        except ValueError as exc:
            raise ModelError(f"{where}: view_references_png_base64 is {exc}; re-run `mnv1-edge train`") from exc

    def trained_light(self) -> light.LightRange | None:
        """The light_range as the daemon's light check takes it (valid: `problem` checked it at load)."""
        if self.light_range is None:
            return None
        lo, hi = self.light_range
        return light.LightRange(float(lo), float(hi))

    def problem(self) -> str:
        """What makes the manifest unusable though it parsed ("" if nothing): each key's range."""
        import math

        if self.light_range is not None and (problem := light.range_problem(self.light_range)):
            return f"light_range {problem}"
        if not (math.isfinite(self.crop_fraction) and 0 < self.crop_fraction <= 1):
            return f"crop_fraction must be above 0 and at most 1 (the central part of the frame the model sees), got {self.crop_fraction}"
        if self.model_bytes < 0:
            return f"model_bytes must not be negative, got {self.model_bytes}"
        if len(self.labels) < NUM_CLASSES:
            # A model of its own classes answers with their names: two alike could not be told apart.
            # (ImageNet's 1001 labels name "crane" twice, the bird and the machine: its answers are class indices too.)
            seen: dict[str, str] = {}
            for label in self.labels:
                key = label.strip().casefold()
                if not key:
                    return "labels: a blank label; a model's own classes need names"
                if key in seen:
                    return f"labels: {seen[key]!r} and {label!r} name the same class"
                seen[key] = label
        return ""

    @staticmethod
    def from_dict(data: Any, where: str) -> Manifest:
        if not isinstance(data, dict):
            raise ModelError(f"{where}: not an mnv1-edge manifest (a JSON {type(data).__name__}, expected an object); re-run `mnv1-edge convert`")
        if data.get("format") != FORMAT:
            raise ModelError(f"{where}: not an mnv1-edge manifest (format {data.get('format')!r}, expected {FORMAT!r})")
        try:
            st = data.get("self_test")
            return Manifest(
                model_sha256=str(data["model_sha256"]),
                model_bytes=int(data["model_bytes"]),
                labels=tuple(str(x) for x in data["labels"]),
                input_shape=tuple(int(x) for x in data["input_shape"]),
                input_dtype=str(data["input_dtype"]),
                output_shape=tuple(int(x) for x in data["output_shape"]),
                output_dtype=str(data["output_dtype"]),
                crop_fraction=float(data["crop_fraction"]),
                provenance=dict(data.get("provenance", {})),
                self_test=SelfTest(**st) if st else None,
                view_references_png_base64=None if data.get("view_references_png_base64") is None else str(data["view_references_png_base64"]),
                kernel_check=_kernel_probes(data.get("kernel_check")),
                light_range=data.get("light_range"),  # checked by `problem`, with the other ranges
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{where}: malformed manifest ({exc!r}); re-run `mnv1-edge convert`") from exc


def _kernel_probes(data: Any) -> KernelProbes | None:
    if data is None:
        return None
    rows = tuple(str(row) for row in data.get("reference_outputs_hex", ()))
    return KernelProbes(str(data["frames_png_base64"]), int(data["bound"]), rows, dict(data.get("measured", {})))


def manifest_path(model: Path) -> Path:
    return Path(str(model) + ".json")


def load_manifest(model: Path, model_sha256: str | None = None) -> Manifest:
    """Load MODEL.tflite.json and check that it belongs to MODEL.tflite."""
    path = manifest_path(model)
    if model.suffix == ".json" and not path.exists() and model.with_suffix("").is_file():
        raise ModelError(f"{model}: is the manifest; give the model file {model.with_suffix('')} (its manifest is found beside it)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelError(f"{path}: manifest missing; a model needs the manifest `mnv1-edge convert` writes beside it") from exc
    except (OSError, ValueError, RecursionError) as exc:
        raise ModelError(f"{path}: unreadable manifest ({exc})") from exc
    manifest = Manifest.from_dict(data, str(path))
    problem = manifest.problem()
    if problem:
        raise ModelError(f"{path}: {problem}; re-run `mnv1-edge convert` or `mnv1-edge train`")
    actual = model_sha256 or sha256_file(model)
    if actual != manifest.model_sha256:
        size = model.stat().st_size
        if size < manifest.model_bytes:
            raise ModelError(f"{model}: {size} bytes, its manifest says {manifest.model_bytes}: a truncated or partial copy; copy the model again")
        raise ModelError(
            f"{path}: manifest belongs to another model (sha256 {manifest.model_sha256[:12]}…, "
            f"{model} is {actual[:12]}…); copy the model and its manifest together"
        )
    if len(manifest.labels) != manifest.output_shape[-1]:
        raise ModelError(f"{path}: {len(manifest.labels)} labels for {manifest.output_shape[-1]} outputs")
    manifest.view_references(str(path))  # a damaged strip fails here, at start, not in the capture thread
    return manifest
