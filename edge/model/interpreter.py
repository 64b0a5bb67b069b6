"""One small wrapper over a TFLite interpreter: feed a uint8 RGB frame, run, read probabilities."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edge.model.contract import dequantize, dequantize_table
from edge.model.runtime import Runtime, make_interpreter


class Interpreter:
    """Takes uint8 RGB frames whatever the model's input type and returns float32 probabilities
    whatever its output type; `raw` is the runtime's own interpreter for anything else."""

    def __init__(
        self,
        model: Path | bytes,
        threads: int = 1,
        runtime: Runtime | None = None,
        builtin_kernels: bool = False,
        preserve_all_tensors: bool = False,
        reference_kernels: bool = False,
    ) -> None:
        self.raw: Any = make_interpreter(model, threads, runtime, builtin_kernels, preserve_all_tensors, reference_kernels)
        inp, out = self.raw.get_input_details()[0], self.raw.get_output_details()[0]
        self.input_index, self.output_index = int(inp["index"]), int(out["index"])
        self.input_shape = tuple(int(x) for x in inp["shape"])
        self.output_shape = tuple(int(x) for x in out["shape"])
        self.input_dtype, self.output_dtype = np.dtype(inp["dtype"]), np.dtype(out["dtype"])
        self._input_quantization: tuple[float, int] = inp["quantization"]
        self._output_quantization: tuple[float, int] = out["quantization"]
        # uint8 outputs (ours, Google's) dequantize by one table lookup: no temporaries per frame.
        self._table = dequantize_table(out["quantization"]) if self.output_dtype == np.uint8 else None

    def set_input(self, frame: np.ndarray) -> None:
        """Copy one HxWx3 uint8 RGB frame into the input tensor (in place for a uint8 input)."""
        if self.input_dtype == np.uint8:
            self.raw.tensor(self.input_index)()[0] = frame
        else:
            self.raw.set_tensor(self.input_index, self._convert(frame))

    def _convert(self, frame: np.ndarray) -> np.ndarray:
        normalized = (frame.astype(np.float32) - 127.5) / 127.5  # the float model's training normalisation
        if self.input_dtype == np.float32:
            return normalized[None]
        scale, zero = self._input_quantization
        info = np.iinfo(self.input_dtype)
        return np.asarray(np.clip(np.round(normalized / scale) + zero, info.min, info.max).astype(self.input_dtype)[None])

    def invoke(self) -> None:
        self.raw.invoke()

    def output(self) -> np.ndarray:
        """The raw output row (a copy), in the model's own output type."""
        raw: np.ndarray = self.raw.get_tensor(self.output_index)[0]
        return raw

    def probabilities(self) -> np.ndarray:
        """The output row as float32 probabilities."""
        raw = self.output()
        if self._table is not None:
            scores: np.ndarray = self._table[raw]
            return scores
        if self.output_dtype == np.float32:
            return np.asarray(raw, np.float32)
        return dequantize(raw, self._output_quantization)

    def classify(self, frame: np.ndarray) -> np.ndarray:
        self.set_input(frame)
        self.invoke()
        return self.probabilities()
