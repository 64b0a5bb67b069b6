"""The `[model]` settings."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from edge.config.fields import Need, setting

# More interpreter threads than cores only slows a 14 M-MAC model down, and absurd counts crash
# the runtime (100000 threads segfaults it); a Pi has 4 cores, so up to 4 is always accepted.
MAX_THREADS = max(4, os.cpu_count() or 1)


@dataclass(frozen=True)
class ModelConfig:
    path: str = setting("/opt/mnv1-edge/models/mobilenet_v1_0.25_128_int8.tflite", "converted model; its manifest MODEL.json must sit beside it")
    sha256: str = setting("", "pin the model file's sha256 (64 hex digits, either case); empty = accept any model whose manifest matches")
    threads: int = setting(1, "interpreter threads (1 is usually fastest per watt for this 14 M-MAC model)", ge=1)
    self_test: bool = setting(True, "classify the manifest's reference image at start and refuse to run if it differs")
    require_xnnpack: bool = setting(
        True,
        "refuse to run unless XNNPACK takes every convolution; false lets the legacy tflite-runtime 2.14 "
        "(no int8 XNNPACK) run on TFLite's built-in kernels, several times slower, with a warning",
    )

    def check(self, need: Need) -> None:
        need(self.threads <= MAX_THREADS, "threads", f"must be at most {MAX_THREADS} (this machine's cores, or 4), got {self.threads}")
        need(not self.sha256 or re.fullmatch(r"[0-9a-fA-F]{64}", self.sha256) is not None, "sha256", "expected 64 hex digits (sha256sum MODEL)")
