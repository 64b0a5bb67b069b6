"""Every model kind (the stock model and every head `train` writes) on emulated Pi cores: the Engine's kernel check, the reference kernels.

One module-scoped run per emulated CPU (Cortex-A53: Pi 3 and Zero 2 W, without dot product; A76: Pi 5,
with it) loads each model through the Engine (its kernel check at load) and classifies the same
frames with XNNPACK; the host computes them with TFLite's reference kernels (integer code that
computes the same on every CPU). The heads come from the session's `head_models` (trained once).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge import paths
from edge.model.kernels import compare
from edge.model.preprocess import list_images, load_image
from edge.train import conditions, heads
from tests.arm64.arm64_env import CURRENT, IN_OUT, IN_REPO, REPO, Arm64

pytestmark = pytest.mark.arm64

CPUS = ("cortex-a53", "cortex-a76")
PROBE = "benchmarks/kernel_outputs.py"
HEAD_FRAMES = 30  # every other frame of the tiny task: emulated, a frame costs about a second
# and after them every other of those at an eighth of the light (conditions.dimmed: train's light probe)
STOCK_DEV = 20  # dev images after the sample photos


Outputs = tuple[dict[str, np.ndarray], dict[str, Any]]


def _load(path: Path) -> Outputs:
    with np.load(path) as data:
        return {k: data[k] for k in data.files if k != "info"}, json.loads(str(data["info"]))


@pytest.fixture(scope="module")
def runs(arm64: Arm64, head_models: Path, converted_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outputs]:
    """Per CPU (and "host": the reference kernels) the raw outputs and Engine checks of every model."""
    out = tmp_path_factory.mktemp("arm64-heads")
    for model in [converted_model, *sorted(head_models.glob("*.tflite"))]:
        shutil.copy(model, out / model.name)
        shutil.copy(model.with_name(model.name + ".json"), out / (model.name + ".json"))
    lit = np.load(head_models / "frames.npy")[:: 60 // HEAD_FRAMES]
    np.save(out / "heads.npy", np.concatenate([lit, conditions.dimmed(lit[::2])]))
    photos = [*list_images(paths.sample_images()), *list_images(paths.dev_images())[:STOCK_DEV]]
    np.save(out / "stock.npy", np.stack([load_image(p) for p in photos]))
    models = sorted(out.glob("*.tflite"))

    def pairs(root: str) -> list[str]:
        return [f"{root}/{m.name}={root}/{'stock' if m.name == converted_model.name else 'heads'}.npy" for m in models]

    def one(cpu: str) -> tuple[str, Outputs]:
        if cpu == "host":
            argv = [sys.executable, str(REPO / PROBE), str(out / "host.npz"), "reference", *pairs(str(out))]
            env = os.environ | {"PYTHONPATH": str(REPO)}
            done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900, check=False)
        else:
            argv = ["python", f"{IN_REPO}/{PROBE}", f"{IN_OUT}/{cpu}.npz", "engine,xnnpack", *pairs(IN_OUT)]
            done = subprocess.run(arm64.command(CURRENT, argv, out, cpu), capture_output=True, text=True, timeout=1800, check=False)
        assert done.returncode == 0, f"{cpu}: {done.stderr[-3000:]}"
        return cpu, _load(out / f"{cpu}.npz")

    with ThreadPoolExecutor(2) as pool:  # CI has 2 cores
        return dict(pool.map(one, (*CPUS, "host")))


@pytest.mark.parametrize("cpu", CPUS)
def test_every_model_kind_runs_xnnpack_on_the_pi_cores(cpu: str, runs: dict[str, Outputs]) -> None:
    """The Engine's check at load passes on every model: XNNPACK computes them as the built-in kernels do."""
    _, info = runs[cpu]
    assert info["machine"] == "aarch64"
    engines = {k: v for k, v in info.items() if k.endswith("/engine")}
    assert len(engines) == 1 + len(heads.NAMES)  # the stock model and every head train has
    assert {k: v["kernels"] for k, v in engines.items()} == dict.fromkeys(engines, "xnnpack"), engines


@pytest.mark.parametrize("cpu", CPUS)
def test_every_model_kind_answers_as_the_reference_kernels(cpu: str, runs: dict[str, Outputs]) -> None:
    """Where XNNPACK's top-1 on the Pi cores is not the reference kernels' it is a near-tie (rounding
    moves those on every CPU alike; docs/design/numerics.md), never a confident other answer; the change
    head's outputs are within rounding of them."""
    arrays, _ = runs[cpu]
    reference, _ = runs["host"]
    for key in sorted(k for k in arrays if k.endswith("/xnnpack")):
        name = key.split("/")[0]
        comparison = compare(arrays[key], reference[f"{name}/reference"])
        assert comparison.decisive == 0 and comparison.top1_differs <= 0.2 * comparison.frames, (name, comparison)
    assert np.abs(reference["change/reference"].astype(int) - arrays["change/xnnpack"]).max() <= 2


@pytest.mark.parametrize("cpu", CPUS)
def test_the_change_head_answers_dimmed_frames_as_lit_ones_on_the_pi_cores(cpu: str, runs: dict[str, Outputs]) -> None:
    """At an eighth of the light, XNNPACK on the Pi's cores gives the change head's frames their lit
    answer: its standardisation holds in int8 (with a mean of squares it did not: every dark empty
    frame of the footage benchmark's lab came out "present")."""
    top = np.argmax(runs[cpu][0]["change/xnnpack"], axis=1)
    lit, dimmed = top[:HEAD_FRAMES:2], top[HEAD_FRAMES:]
    assert len(dimmed) == HEAD_FRAMES // 2 and np.mean(lit == dimmed) >= 0.9, (lit, dimmed)
