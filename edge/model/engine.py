"""The inference engine: one interpreter, XNNPACK verified, manifest-checked, self-tested."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import ModelError
from edge.fsutil import sha256_file
from edge.model import kernels
from edge.model.contract import INPUT_SHAPE, Prediction, top_k
from edge.model.interpreter import Interpreter
from edge.model.kernels import KernelCheck
from edge.model.manifest import Manifest, load_manifest, manifest_path
from edge.model.runtime import Runtime, delegated_op_counts, load_runtime

# Prediction and top_k live in edge.model.contract; re-exported for the daemon's existing imports.
__all__ = ["REQUIRED_DELEGATED", "Engine", "Prediction", "top_k"]

log = logging.getLogger(__name__)

# Ops we require inside XNNPACK: they are >95% of the multiply-adds of this network.
REQUIRED_DELEGATED = ("CONV_2D", "DEPTHWISE_CONV_2D")


def _shape(shape: tuple[int, ...], dtype: str) -> str:
    return "x".join(map(str, shape)) + f" {dtype}"


class Engine:
    """Runs one model on 128x128 uint8 RGB frames and returns dequantized probabilities."""

    def __init__(
        self,
        model: Path,
        threads: int = 1,
        expected_sha256: str = "",
        self_test: bool = True,
        require_xnnpack: bool = True,
        check_kernels: bool = True,
    ):
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
        self._model = Interpreter(self.model_path, threads, self.runtime)
        self._check_contract()
        self.delegated, self.not_delegated = delegated_op_counts(self._model.raw)
        missing = [op for op in REQUIRED_DELEGATED if self.not_delegated.get(op)]
        if missing or not self.delegated:
            problem = f"{model}: XNNPACK did not take {missing or 'any op'} with {self.runtime.name} {self.runtime.version}"
            if require_xnnpack:
                raise ModelError(f"{problem}; install ai-edge-litert, or set model.require_xnnpack = false to run slower without it")
            log.warning("%s: running on TFLite's built-in kernels, several times slower; install ai-edge-litert", problem)
        self.kernels = "xnnpack" if self.delegated else "builtin"  # which kernels classify the frames
        self.kernel_check: KernelCheck | None = None
        if check_kernels and self.delegated:
            self._check_kernels(require_xnnpack)
        self.labels = self.manifest.labels
        if self_test:
            self.run_self_test()

    def _check_contract(self) -> None:
        model, m = self._model, self.manifest
        got_in = (model.input_shape, model.input_dtype.name)
        got_out = (model.output_shape, model.output_dtype.name)
        # Say which side is wrong: the model file (not what this daemon feeds) or its manifest.
        if got_in != (INPUT_SHAPE, "uint8"):
            raise ModelError(f"{self.model_path}: the model's input is {_shape(*got_in)}, not the {_shape(INPUT_SHAPE, 'uint8')} this daemon feeds")
        where = manifest_path(self.model_path)
        if got_in != (m.input_shape, m.input_dtype):
            raise ModelError(f"{where}: the manifest says input {_shape(m.input_shape, m.input_dtype)}, the model has {_shape(*got_in)}")
        if got_out != (m.output_shape, m.output_dtype) or got_out[0] != (1, len(m.labels)):
            raise ModelError(
                f"{where}: the manifest says output {_shape(m.output_shape, m.output_dtype)} with {len(m.labels)} labels, "
                f"the model has {_shape(*got_out)}"
            )

    def _check_kernels(self, require_xnnpack: bool) -> None:
        """Run the self-test and probe frames through XNNPACK and compare with the outputs of TFLite's
        reference kernels the manifest records (a manifest without them: the self-test frame, against
        the built-in kernels run here). A CPU whose XNNPACK kernels compute this model otherwise (as x86
        without VNNI did an int8 mean: edge/convert/reductions.py) gets the built-in kernels, with one
        warning, or a refusal."""
        t0 = time.perf_counter()
        where = str(manifest_path(self.model_path))
        probes, st = self.manifest.kernel_check, self.manifest.self_test
        expected = probes.reference_outputs(where) if probes is not None else None
        if st is None:
            return  # run_self_test says so
        frames = [st.frame(where), *(probes.frames(where) if probes is not None and expected is not None else [])]
        builtin = None
        if expected is None:  # an older manifest: what TFLite's own kernels compute here
            builtin = Interpreter(self.model_path, self.threads, self.runtime, builtin_kernels=True)
            expected = kernels.raw_outputs(builtin, frames)
        if len(expected) != len(frames) or expected.shape[1] != self._model.output_shape[-1]:
            raise ModelError(f"{where}: kernel_check has {len(expected)} reference outputs for {len(frames)} frames; re-run `mnv1-edge convert`")
        comparison = kernels.compare(kernels.raw_outputs(self._model, frames), expected)
        bound = probes.bound if probes is not None and probes.reference_outputs_hex else kernels.MIN_BOUND
        self.kernel_check = KernelCheck(comparison, bound, kernels.cpu_features(), round((time.perf_counter() - t0) * 1e3, 1))
        if self.kernel_check.agrees:
            return
        problem = (
            f"{self.model_path}: XNNPACK on this CPU ({self.kernel_check.cpu}) computes this model otherwise than TFLite's reference "
            f"kernels: {comparison.describe()} (the manifest allows {self.kernel_check.bound})"
        )
        if require_xnnpack:
            raise ModelError(
                f"{problem}; convert or train the model again with this version of mnv1-edge, "
                "or set model.require_xnnpack = false to run it on the built-in kernels, more slowly"
            )
        log.warning("%s: running it on the built-in kernels, more slowly", problem)
        builtin = builtin or Interpreter(self.model_path, self.threads, self.runtime, builtin_kernels=True)
        self._model, self.kernels = builtin, "builtin"
        self.delegated, self.not_delegated = delegated_op_counts(builtin.raw)

    @property
    def kernel_fallback(self) -> bool:
        """XNNPACK was there but computed this model otherwise: the built-in kernels run it."""
        return self.kernel_check is not None and not self.kernel_check.agrees

    def invoke(self, frame: np.ndarray) -> None:
        """Copy one 128x128x3 uint8 frame into the input tensor (in place) and run the model."""
        self._model.set_input(frame)
        self._model.invoke()

    def raw_output(self) -> np.ndarray:
        return self._model.output()

    def scores(self) -> np.ndarray:
        """The output as float32 probabilities: one table lookup, no temporaries."""
        return self._model.probabilities()

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
            "kernels": "XNNPACK" if self.kernels == "xnnpack" else "TFLite built-in" + (" (XNNPACK disagreed)" if self.kernel_fallback else ""),
            "kernel_check": self.kernel_check.describe() if self.kernel_check is not None else "not run",
            "threads": self.threads,
            "model": str(self.model_path),
            "model_sha256": self.sha256,
            "delegated_ops": self.delegated,
            "cpu_ops": self.not_delegated,
            "classes": len(self.labels),
        }
