"""The inference engine: one interpreter, XNNPACK verified, manifest-checked, self-tested."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import ModelError
from edge.fsutil import sha256_file
from edge.model.manifest import Manifest, SelfTest, load_manifest, manifest_path
from edge.model.runtime import Runtime, delegated_op_counts, load_runtime, make_interpreter

log = logging.getLogger(__name__)

# Ops we require inside XNNPACK: they are >95% of the multiply-adds of this network.
REQUIRED_DELEGATED = ("CONV_2D", "DEPTHWISE_CONV_2D")


@dataclass(frozen=True)
class Prediction:
    class_index: int
    label: str
    score: float


def top_k(scores: np.ndarray, labels: tuple[str, ...], k: int) -> tuple[Prediction, ...]:
    """The k best classes; ties (common with a uint8 output, whose step is 1/256) go to the
    lower class index, so results are deterministic and match np.argmax."""
    order = np.argsort(-scores, kind="stable")[:k]
    return tuple(Prediction(int(i), labels[int(i)], float(scores[i])) for i in order)


def _shape(shape: tuple[int, ...], dtype: str) -> str:
    return "x".join(map(str, shape)) + f" {dtype}"


def dequantize_table(quantization: tuple[float, int]) -> np.ndarray:
    """uint8 value → float32 probability, from the output tensor's own scale and zero point
    (as pycoral does); raw/255 would be wrong."""
    scale, zero_point = quantization
    return (np.float32(scale or 1.0) * (np.arange(256, dtype=np.int32) - zero_point)).astype(np.float32)


class Engine:
    """Runs one model on 128x128 uint8 RGB frames and returns dequantized probabilities."""

    def __init__(self, model: Path, threads: int = 1, expected_sha256: str = "", self_test: bool = True, require_xnnpack: bool = True):
        self.model_path = Path(model)
        if self.model_path.is_dir():
            raise ModelError(f"{model}: is a folder; give the model file (.tflite) with its manifest beside it")
        if not self.model_path.is_file():
            raise ModelError(f"{model}: model file not found; build it with `make model` or `mnv1-edge convert`")
        self.sha256 = sha256_file(self.model_path)
        if expected_sha256 and expected_sha256.lower() != self.sha256:  # a pin may be upper-case hex
            raise ModelError(f"{model}: sha256 {self.sha256} does not match the pinned model.sha256 {expected_sha256}")
        self.manifest: Manifest = load_manifest(self.model_path, self.sha256)
        self.runtime: Runtime = load_runtime()
        self.threads = threads
        self._interp: Any = make_interpreter(self.model_path, threads, self.runtime)
        self._check_contract()
        self.delegated, self.not_delegated = delegated_op_counts(self._interp)
        missing = [op for op in REQUIRED_DELEGATED if self.not_delegated.get(op)]
        if missing or not self.delegated:
            problem = f"{model}: XNNPACK did not take {missing or 'any op'} with {self.runtime.name} {self.runtime.version}"
            if require_xnnpack:
                raise ModelError(f"{problem}; install ai-edge-litert, or set model.require_xnnpack = false to run slower without it")
            log.warning("%s: running on TFLite's built-in kernels, several times slower; install ai-edge-litert", problem)
        self.labels = self.manifest.labels
        if self_test:
            self.run_self_test()

    def _check_contract(self) -> None:
        inp = self._interp.get_input_details()[0]
        out = self._interp.get_output_details()[0]
        m = self.manifest
        got_in = (tuple(int(x) for x in inp["shape"]), np.dtype(inp["dtype"]).name)
        got_out = (tuple(int(x) for x in out["shape"]), np.dtype(out["dtype"]).name)
        # Say which side is wrong: the model file (not what this daemon feeds) or its manifest.
        if got_in != ((1, 128, 128, 3), "uint8"):
            raise ModelError(f"{self.model_path}: the model's input is {_shape(*got_in)}, not the 1x128x128x3 uint8 this daemon feeds")
        if got_in != (m.input_shape, m.input_dtype):
            where = manifest_path(self.model_path)
            raise ModelError(f"{where}: the manifest says input {_shape(m.input_shape, m.input_dtype)}, the model has {_shape(*got_in)}")
        if got_out != (m.output_shape, m.output_dtype) or got_out[0] != (1, len(m.labels)):
            where = manifest_path(self.model_path)
            raise ModelError(
                f"{where}: the manifest says output {_shape(m.output_shape, m.output_dtype)} with {len(m.labels)} labels, "
                f"the model has {_shape(*got_out)}"
            )
        self._in_index = int(inp["index"])
        self._out_index = int(out["index"])
        self._dequantize = dequantize_table(out["quantization"])

    def invoke(self, frame: np.ndarray) -> None:
        """Copy one 128x128x3 uint8 frame into the input tensor and run the model."""
        self._interp.tensor(self._in_index)()[0] = frame
        self._interp.invoke()

    def raw_output(self) -> np.ndarray:
        raw: np.ndarray = self._interp.get_tensor(self._out_index)[0]
        return raw

    def scores(self) -> np.ndarray:
        """The output as float32 probabilities: one table lookup, no temporaries."""
        scores: np.ndarray = self._dequantize[self.raw_output()]
        return scores

    def classify(self, frame: np.ndarray) -> np.ndarray:
        self.invoke(frame)
        return self.scores()

    def top_k(self, scores: np.ndarray, k: int) -> tuple[Prediction, ...]:
        return top_k(scores, self.labels, k)

    def run_self_test(self) -> float:
        """Classify the manifest's reference frame; a different top-1 means a corrupt model or a
        broken runtime. Returns the inference time in ms."""
        st = self.manifest.self_test
        if st is None:
            raise ModelError(f"{self.model_path}: manifest has no self-test; re-run `mnv1-edge convert`")
        t0 = time.perf_counter()
        got = self.top_k(self.classify(st.frame(str(manifest_path(self.model_path)))), 1)[0]
        ms = (time.perf_counter() - t0) * 1e3
        if got.class_index != st.top1:
            raise ModelError(
                f"{self.model_path}: self-test failed: reference image {st.source} gave {got.class_index} "
                f"({got.label}), expected {st.top1} ({st.label}); the model or the runtime is broken"
            )
        return ms

    def describe(self) -> dict[str, Any]:
        return {
            "runtime": self.runtime.name,
            "runtime_version": self.runtime.version,
            "delegate": "XNNPACK" if self.delegated else "none (TFLite built-in kernels)",
            "threads": self.threads,
            "model": str(self.model_path),
            "model_sha256": self.sha256,
            "delegated_ops": self.delegated,
            "cpu_ops": self.not_delegated,
            "classes": len(self.labels),
        }


def make_manifest(
    model: Path,
    labels: tuple[str, ...],
    reference_images: list[Path],
    provenance: dict[str, Any] | None = None,
    crop_fraction: float = 0.875,
) -> Manifest:
    """Bind a uint8-in/uint8-out model to its labels and a self-test frame.

    The self-test uses the reference image with the widest top-1/top-2 margin, so the check is
    robust to rounding differences between CPUs and runtime versions.
    """
    from edge.model.preprocess import load_image

    interp = make_interpreter(model, 1)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    dequantize = dequantize_table(out["quantization"])
    best: tuple[float, SelfTest] | None = None
    for image in reference_images:
        frame = load_image(image, fraction=crop_fraction)
        interp.set_tensor(inp["index"], frame[None])
        interp.invoke()
        probs = dequantize[interp.get_tensor(out["index"])[0]]
        first, second = top_k(probs, labels, 2)
        margin = first.score - second.score
        if best is None or margin > best[0]:
            best = (margin, SelfTest.from_frame(frame, first.class_index, first.label, first.score, image.name))
    if best is None:
        raise ModelError("no reference image for the self-test")
    return Manifest(
        model_sha256=sha256_file(model),
        model_bytes=Path(model).stat().st_size,
        labels=labels,
        input_shape=tuple(int(x) for x in inp["shape"]),
        input_dtype=np.dtype(inp["dtype"]).name,
        output_shape=tuple(int(x) for x in out["shape"]),
        output_dtype=np.dtype(out["dtype"]).name,
        crop_fraction=crop_fraction,
        provenance=provenance or {},
        self_test=best[1],
    )
