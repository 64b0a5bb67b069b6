"""Every model kind x {x86 AVX2 emulated, x86 native, Cortex-A53, A76}: top-1 agreement with TFLite's reference kernels, largest output difference.

Before and after the converter splits long int8 means (edge/convert/reductions.py):

    python -m benchmarks.numerics [--out DIR] [--platforms native,haswell,a53,a76]

Trains every head on the tiny parrot task of tests/test_train.py (seed 3, 60 frames) twice, with and
without edge/convert/reductions.py's split (only the change head has a mean to split: the other
heads' bytes come out the same and are measured once), then classifies 200 other frames of the same
scenes (seed 5) with each model, and 200 ImageNet dev images with the stock model
(models/mobilenet_v1_0.25_128_int8.tflite, `make model`): natively (XNNPACK, the built-in and the
reference kernels), under `qemu-x86_64-static -cpu Haswell` and in the arm64 test rootfs as a
Cortex-A53 and A76 (needs root and `make test-arm64`'s rootfs; XNNPACK). Prints the markdown table
of docs/design/numerics.md; the raw outputs stay in DIR (default build/numerics).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
PROBE = "benchmarks/kernel_outputs.py"
PLATFORMS = {"haswell": "x86 AVX2 (emulated Haswell)", "native": "x86 native", "a53": "Cortex-A53", "a76": "Cortex-A76"}
FRAMES = 200


@contextmanager
def unsplit() -> Iterator[None]:
    """The converter as it was: long means left whole."""
    from edge.convert import reductions

    original = reductions.split_long_means
    reductions.split_long_means = lambda data, frames: data
    try:
        yield
    finally:
        reductions.split_long_means = original


def models(out: Path) -> dict[str, Path]:
    """out/models/<kind>.tflite (with manifests): 'stock', every head, and '<head>-before' for the
    heads whose bytes the split changes."""
    import shutil

    from tests.support.kernel_models import train_heads

    for tag in ("after", "before"):
        if not (out / tag / "frames.npy").is_file():
            with unsplit() if tag == "before" else _nothing():
                train_heads(out / tag)
    folder = out / "models"
    folder.mkdir(exist_ok=True)
    chosen = {"stock": REPO / "models" / "mobilenet_v1_0.25_128_int8.tflite"}
    for model in sorted((out / "after").glob("*.tflite")):
        before = out / "before" / model.name
        chosen[model.stem] = model
        if before.read_bytes() != model.read_bytes():
            chosen[f"{model.stem}-before"] = before
    found = {}
    for name, model in chosen.items():
        found[name] = folder / f"{name}.tflite"
        shutil.copy(model, found[name])
        shutil.copy(model.with_name(model.name + ".json"), folder / f"{name}.tflite.json")
    return found


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def frames(out: Path) -> dict[str, Path]:
    from benchmarks.tasks import presence_task
    from edge import paths
    from edge.model.preprocess import list_images, load_image
    from edge.model.region import NO_CROP

    files = {"heads": out / "models" / "heads.npy", "stock": out / "models" / "stock.npy"}
    if not files["heads"].is_file():
        task = presence_task(out / "probe", paths.dev_images(), paths.sample_images() / "parrot.jpg", FRAMES, seed=5)
        np.save(files["heads"], np.stack([load_image(p, NO_CROP) for name in ("absent", "present") for p in list_images(task / name)]))
    if not files["stock"].is_file():
        np.save(files["stock"], np.stack([load_image(p) for p in list_images(paths.dev_images())[:FRAMES]]))
    return files


def run(platform: str, out: Path, found: dict[str, Path], files: dict[str, Path]) -> dict[str, Any]:
    """The platform's raw outputs per model and the Engine's check of each (benchmarks/kernel_outputs.py)."""
    outputs = _run(platform, out, found, files, "xnnpack,builtin,reference" if platform == "native" else "xnnpack")
    engine = _run(platform, out, found, files, "engine")
    return outputs | {"info": outputs["info"] | engine["info"]}


def _run(platform: str, out: Path, found: dict[str, Path], files: dict[str, Path], kernels: str) -> dict[str, Any]:
    result = out / f"{platform}-{kernels.replace(',', '-')}.npz"
    if not result.is_file():
        folder = out / "models"
        if platform in ("a53", "a76"):
            from edge import paths
            from tests.arm64.arm64_env import CURRENT, IN_OUT, IN_REPO, locked, prepare

            pairs = [f"{IN_OUT}/{m.name}={IN_OUT}/{files['stock' if name == 'stock' else 'heads'].name}" for name, m in found.items()]
            with locked():
                arm = prepare(paths.shared_dir())
            argv = ["python", f"{IN_REPO}/{PROBE}", f"{IN_OUT}/{result.name}", kernels, *pairs]
            subprocess.run(arm.command(CURRENT, argv, folder, f"cortex-{platform}"), check=True)
            (folder / result.name).rename(result)
        else:
            pairs = [f"{m}={files['stock' if name == 'stock' else 'heads']}" for name, m in found.items()]
            qemu = ["qemu-x86_64-static", "-cpu", "Haswell"] if platform == "haswell" else []
            env = os.environ | {"PYTHONPATH": str(REPO)}
            subprocess.run([*qemu, sys.executable, str(REPO / PROBE), str(result), kernels, *pairs], env=env, check=True)
    with np.load(result) as data:
        return {k: data[k] for k in data.files if k != "info"} | {"info": json.loads(str(data["info"]))}


def table(found: dict[str, Path], results: dict[str, dict[str, Any]]) -> str:
    """Per model and platform: top-1 agreement with the reference kernels (native) / largest output difference."""
    native = results["native"]
    lines = ["| model | " + " | ".join(PLATFORMS[p] for p in results) + " |", "|---|" + "---|" * len(results)]
    for name in found:
        ref = native[f"{name}/reference"].astype(np.int64)
        cells = []
        for data in results.values():
            got = data[f"{name}/xnnpack"].astype(np.int64)
            engine = data["info"].get(f"{name}/engine", {}).get("kernels", "?")
            cell = f"{100.0 * float(np.mean(got.argmax(1) == ref.argmax(1))):.1f} % / {int(np.abs(got - ref).max())}"
            cells.append(cell + ("" if engine == "xnnpack" else f" (Engine: {engine})"))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    builtin = []
    for name in found:
        got, ref = native[f"{name}/builtin"].astype(np.int64), native[f"{name}/reference"].astype(np.int64)
        builtin.append(f"{name} {100.0 * float(np.mean(got.argmax(1) == ref.argmax(1))):.1f} % / {int(np.abs(got - ref).max())}")
    return "\n".join([*lines, "", "TFLite's built-in kernels against the reference kernels (native): " + ", ".join(builtin)])


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=REPO / "build" / "numerics")
    p.add_argument("--platforms", default=",".join(PLATFORMS))
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    found, files = models(args.out), frames(args.out)
    results = {p: run(p, args.out, found, files) for p in args.platforms.split(",")}
    results.setdefault("native", run("native", args.out, found, files))
    print(table(found, results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
