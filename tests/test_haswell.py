"""x86 AVX2 without VNNI emulated on any x86 host (qemu-x86_64-static -cpu Haswell): every model kind, the Engine's kernel check.

XNNPACK picks its int8 kernels by the CPU it finds, so a test run natively checks only this host's
kernels. QEMU 7.2 emulates AVX2 (not AVX-512), the case whose int8 sum kernels wrapped around:
this stage runs the same engine under that CPU wherever the tests run, so its thresholds do not
depend on the host. (An AVX-512 host's own kernels run in every other stage.)
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from edge import paths
from edge.model.kernels import compare
from edge.model.preprocess import list_images, load_image
from edge.train import heads
from tests.support.daemon import write_config
from tests.support.kernel_models import HALVES, half_brightness_model, half_frames

pytestmark = [pytest.mark.haswell, pytest.mark.slow]
REPO = Path(__file__).resolve().parent.parent
QEMU = ("qemu-x86_64-static", "-cpu", "Haswell")
PROBE = REPO / "benchmarks" / "kernel_outputs.py"
STOCK_FRAMES = 30  # dev images, after the sample photos: a 1001-class model's near-ties need some


@pytest.fixture(scope="module")
def qemu() -> tuple[str, ...]:
    if platform.machine() != "x86_64":
        pytest.skip("the Haswell stage emulates an x86_64 CPU on an x86_64 host")
    if shutil.which(QEMU[0]) is None:
        pytest.fail(f"{QEMU[0]} missing: apt-get install qemu-user-static (`make apt-test` does)")
    return QEMU


def python(argv: list[str], emulate: bool = True, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """`python ARGV...` of this venv, on an emulated Haswell (AVX2, FMA; no AVX-512, no VNNI) or natively."""
    env = os.environ | {"PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    qemu = QEMU if emulate else ()
    return subprocess.run([*qemu, sys.executable, *argv], capture_output=True, text=True, env=env, timeout=timeout, check=False)


def outputs(out: Path, kernels: str, pairs: list[str], emulate: bool) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """benchmarks/kernel_outputs.py's raw outputs (and Engine checks) of every MODEL=FRAMES pair."""
    done = python([str(PROBE), str(out), kernels, *pairs], emulate)
    assert done.returncode == 0, done.stderr[-3000:]
    with np.load(out) as data:
        return {k: data[k] for k in data.files if k != "info"}, json.loads(str(data["info"]))


def half_model(folder: Path, split: bool) -> Path:
    """The half-brightness model with its manifest (reference images: bright and dark frames)."""
    from edge.convert.manifest import make_manifest, write_manifest
    from edge.convert.reductions import split_long_means

    folder.mkdir(parents=True, exist_ok=True)
    images = []
    for i, frame in enumerate(half_frames()):
        images.append(folder / f"{i}.png")
        Image.fromarray(frame).save(images[-1])
    data = half_brightness_model()
    model = folder / "half.tflite"
    model.write_bytes(split_long_means(data, np.stack(half_frames())) if split else data)
    write_manifest(model, make_manifest(model, HALVES, images, {"kind": "tests"}, crop_fraction=1.0))
    return model


def test_avx2_sums_a_long_int8_mean_wrongly_and_the_engine_notices(qemu: tuple[str, ...], tmp_path: Path) -> None:
    """A mean over 24576 int8 values in one run: XNNPACK's AVX2 sum kernel wraps around on bright and
    dark frames, far from the reference kernels' outputs the manifest records. The Engine's check at
    load refuses the model (model.require_xnnpack = true), or says so once and classifies on the
    built-in kernels (false), counted in the stats; the converter's split of the mean
    (edge/convert/reductions.py) makes XNNPACK compute it right."""
    model = half_model(tmp_path / "unsplit", split=False)
    info = python(["-m", "edge", "info", "--model", str(model), "--json"])
    assert info.returncode != 0
    assert "computes this model otherwise than TFLite's reference kernels" in info.stderr, info.stderr[-2000:]
    assert "model.require_xnnpack = false" in info.stderr

    source = {"kind": "images", "images": {"path": str(model.parent)}}
    sinks = {"stdout": {"enabled": True}}
    model_settings = {"path": str(model), "require_xnnpack": False}
    results = {"publish": "every", "smoothing": "none"}
    config = write_config(
        tmp_path / "config.toml", {"state_dir": str(tmp_path), "model": model_settings, "source": source, "results": results, "sinks": sinks}
    )
    run = python(["-m", "edge", "run", "--config", str(config), "--max-frames", "6"])
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stderr.count("running it on the built-in kernels") == 1, run.stderr[-3000:]
    assert "kernels TFLite built-in (XNNPACK disagreed at load)" in run.stderr
    records = {r["source"]: r["top_k"][0]["label"] for r in map(json.loads, (x for x in run.stdout.splitlines() if x.startswith("{")))}
    brighter = {f"{i}.png": HALVES[int(f[64:].mean() > f[:64].mean())] for i, f in enumerate(half_frames())}
    assert records == brighter

    fixed = python(["-m", "edge", "info", "--model", str(half_model(tmp_path / "split", split=True)), "--json"])
    assert fixed.returncode == 0, fixed.stderr[-2000:]
    facts = json.loads(fixed.stdout)
    assert facts["kernels"] == "XNNPACK" and facts["kernel_check"].startswith("XNNPACK agrees"), facts


def test_every_model_kind_under_avx2_answers_as_the_reference_kernels(
    qemu: tuple[str, ...], head_models: Path, converted_model: Path, tmp_path: Path
) -> None:
    """The stock model and every head `train` writes, on emulated AVX2: the Engine's check at load
    passes (XNNPACK runs), and where XNNPACK's top-1 is not the reference kernels' it is a near-tie
    (rounding moves those on every CPU alike; docs/design/numerics.md), never a confident other answer."""
    stock = np.stack([load_image(p) for p in [*list_images(paths.sample_images()), *list_images(paths.dev_images())[:STOCK_FRAMES]]])
    np.save(tmp_path / "stock.npy", stock)
    pairs = [f"{converted_model}={tmp_path / 'stock.npy'}"]
    pairs += [f"{m}={head_models / 'frames.npy'}" for m in sorted(head_models.glob("*.tflite"))]
    reference, _ = outputs(tmp_path / "native.npz", "reference", pairs, emulate=False)
    xnnpack, info = outputs(tmp_path / "haswell.npz", "engine,xnnpack", pairs, emulate=True)
    names = sorted({k.split("/")[0] for k in reference})
    assert len(names) == 1 + len(heads.NAMES)  # the stock model and every head train has
    for name in names:
        comparison = compare(xnnpack[f"{name}/xnnpack"], reference[f"{name}/reference"])
        assert info[f"{name}/engine"]["kernels"] == "xnnpack", (name, info[f"{name}/engine"])
        assert comparison.decisive == 0 and comparison.top1_differs <= 0.2 * comparison.frames, (name, comparison)
    change = reference["change/reference"], xnnpack["change/xnnpack"]
    assert np.abs(change[0].astype(int) - change[1]).max() <= 8  # the overflowing mean is split: rounding only (it gave 190-255)


def test_sse4_x86_sums_a_long_int8_mean_wrongly_too_and_the_split_fixes_it(qemu: tuple[str, ...], tmp_path: Path) -> None:
    """x86 without AVX (emulated Nehalem: SSSE3, SSE4.2) runs XNNPACK's SSSE3 sum kernel, which wraps
    as the AVX2 one does (on other values); the split mean is right there too."""
    data, frames = half_brightness_model(), np.stack(half_frames())
    from edge.convert.reductions import split_long_means

    (tmp_path / "unsplit.tflite").write_bytes(data)
    (tmp_path / "split.tflite").write_bytes(split_long_means(data, frames))
    np.save(tmp_path / "frames.npy", frames)
    pairs = [f"{tmp_path / name}.tflite={tmp_path / 'frames.npy'}" for name in ("unsplit", "split")]
    reference, _ = outputs(tmp_path / "native.npz", "reference", pairs, emulate=False)
    env = os.environ | {"PYTHONPATH": str(REPO)}
    argv = ["qemu-x86_64-static", "-cpu", "Nehalem", sys.executable, str(PROBE), str(tmp_path / "nehalem.npz"), "xnnpack", *pairs]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    with np.load(tmp_path / "nehalem.npz") as got:
        assert np.abs(got["unsplit/xnnpack"].astype(int) - reference["unsplit/reference"]).max() > 64
        assert np.abs(got["split/xnnpack"].astype(int) - reference["split/reference"]).max() <= 1
