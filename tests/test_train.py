"""`mnv1-edge train` end to end on a tiny real-photo task: gated model, manifest, report, N-class daemon, byte-reproducibility."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.tasks import presence_task
from edge import paths
from edge.convert.manifest import PROBES
from edge.train.head import INPUTS
from tests.support.daemon import write_config

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny_task(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 classes x 30 frames: a dev-set scene with or without the parrot pasted small."""
    return presence_task(tmp_path_factory.mktemp("task") / "frames", paths.dev_images(), paths.sample_images() / "parrot.jpg", 60, seed=3)


def train(images: Path, out: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "edge", "train", "--images", str(images), "--out", str(out), "--source", str(paths.float_model()), *extra]
    full_env = os.environ | {"PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"} | (env or {})
    return subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=600)


@pytest.fixture(scope="module")
def trained(tiny_task: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("model") / "custom.tflite"
    proc = train(tiny_task, out, "--report", str(out.with_suffix(".report.json")), "--min-accuracy", "60", "--min-agreement", "60")
    assert proc.returncode == 0, proc.stderr
    assert "gate      passed" in proc.stdout
    return out


def test_model_manifest_and_report(trained: Path) -> None:
    from edge.model.engine import Engine

    engine = Engine(trained, threads=1)  # checks sha256, contract, XNNPACK, and runs the self-test
    assert engine.labels == ("absent", "present")
    assert engine.manifest.output_shape == (1, 2) and engine.manifest.crop_fraction == 1.0
    st = engine.manifest.self_test
    assert st is not None and st.label in engine.labels
    assert engine.manifest.provenance["kind"].startswith("custom classes")
    refs = engine.manifest.view_references()  # one camera's view: the daemon's moved-camera check gets it
    assert refs is not None and refs.shape[1:] == (64, 64)
    report = json.loads(trained.with_suffix(".report.json").read_text())
    names = [m["name"] for m in report["held_out"]]
    assert names == ["float", "int8 plain"]
    assert report["head"]["input"] == "change"  # two classes, one the empty scene: the pixels are what the parrot changes
    # Held out in time: each class's latest 30 % (9 of 30), the 5 % before them (2) used for neither.
    assert report["images"]["held_out"] == 18 and report["images"]["per_class"]["present"] == {"train": 19, "held_out": 9}
    assert report["images"]["between"] == 4 and report["images"]["split"].startswith("in time")
    assert report["head"]["input"] in INPUTS and report["gate"]["passed"]
    assert report["model"]["sha256"] == hashlib.sha256(trained.read_bytes()).hexdigest()
    assert trained.with_suffix(".report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # int8 on the reference kernels (held_out, gated) and on this CPU's XNNPACK side by side, on 60 frames
    kernels = report["kernels"]
    assert kernels["passed"] and kernels["frames"] == 56 and kernels["min_agreement"] == 80.0  # 18 held out + 38 trained on
    assert {"accuracy_reference", "accuracy_xnnpack"} <= set(kernels) and kernels["accuracy_reference"] == report["held_out"][-1]["accuracy"]
    probes = engine.manifest.kernel_check  # the Engine's check at load passed on them
    assert probes is not None and len(probes.frames()) == PROBES and engine.kernels == "xnnpack"


def test_daemon_runs_the_two_class_model(trained: Path, tiny_task: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        "\n".join(
            [
                f'state_dir = "{tmp_path}"',
                "[model]",
                f'path = "{trained}"',
                "[source]",
                'kind = "images"',
                "[source.images]",
                f'path = "{tiny_task / "present"}"',
                "[results]",
                "top_k = 2",
                'publish = "every"',
                "[sinks.stdout]",
                "enabled = true",
            ]
        )
        + "\n"
    )
    env = os.environ | {"PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "edge", "run", "--config", str(config), "--max-frames", "3"], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(records) == 3
    assert all({p["label"] for p in r["top_k"]} <= {"absent", "present"} for r in records)


def test_bench_measures_the_two_class_model(trained: Path) -> None:
    """`mnv1-edge bench --model` of your own model: every stage but the ImageNet groups, which it says it skips."""
    cmd = [sys.executable, "-m", "edge", "bench", "--model", str(trained), "--frames", "20", "--batches", "1", "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ | {"PYTHONPATH": str(REPO)}, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "built-in groups skipped: the model has 2 classes" in proc.stderr
    timings = json.loads(proc.stdout)["timings"]
    assert "results_label" in timings and "pipeline_memory_to_file" in timings and "group_sums_bird_dog" not in timings


def test_change_head_takes_the_camera_bytes_without_a_backbone(tiny_task: Path, tmp_path: Path) -> None:
    """The change head's model: the raw uint8 frame goes straight into the standardisation (the
    converter's prologue replaced, the shared constants kept; its two means over the whole frame
    split in two each, which XNNPACK's x86 kernels then sum right), no backbone, int8 agrees with
    float, XNNPACK on this CPU with the reference kernels, and the bytes do not depend on the thread
    count or oneDNN."""
    from edge.convert import flatbuf
    from edge.model.engine import Engine

    digests = []
    for threads, onednn in (("1", "0"), ("2", "1")):
        out, report = tmp_path / f"change{threads}.tflite", tmp_path / f"change{threads}.json"
        env = {"TF_NUM_INTRAOP_THREADS": threads, "OMP_NUM_THREADS": threads, "TF_ENABLE_ONEDNN_OPTS": onednn}
        # 90: int8 and float disagreed on 1 of the 18 held-out (latest) frames (94.4 %, reference kernels)
        proc = train(tiny_task, out, "--head", "change", "--min-accuracy", "80", "--min-agreement", "90", "--report", str(report), env=env)
        assert proc.returncode == 0, proc.stderr
        digests.append(hashlib.sha256(out.read_bytes()).hexdigest())
    assert digests[0] == digests[1]
    Engine(out, threads=1)  # contract, XNNPACK for its convolutions, and the manifest's self-test
    model = flatbuf.read(out.read_bytes(), str(out))
    codes = [flatbuf.opcode(model, op) for op in model.subgraphs[0].operators]
    assert codes[:2] == [flatbuf.QUANTIZE, flatbuf.MEAN] and codes.count(flatbuf.CONV_2D) == 2 and flatbuf.RESIZE_BILINEAR not in codes
    assert codes.count(flatbuf.MEAN) == 4
    r = json.loads(report.read_text())
    kernels = r["kernels"]  # the same answers through XNNPACK here as through the reference kernels
    # within rounding (5 steps here on the time split's frames); the x86 sum overflow gave 190-201 (docs/design/numerics.md)
    assert kernels["top1_agreement"] == 100.0 and kernels["max_diff"] <= 8, kernels
    assert abs(kernels["accuracy_xnnpack"] - kernels["accuracy_reference"]) <= 1.0
    assert r["head"]["input"] == "change" and [m["name"] for m in r["held_out"]] == ["float", "int8 plain"]
    assert any(n.startswith("change: says 'present'") for n in r["notes"]) and not any("bias correction" in n for n in r["notes"])


def test_gate_failure_writes_no_model_but_a_report(tiny_task: Path, tmp_path: Path) -> None:
    out = tmp_path / "custom.tflite"
    report = tmp_path / "r.json"
    # Floors of 100 %: only a model right on every held-out image, agreeing on each, would pass (the options refuse more than 100).
    proc = train(tiny_task, out, "--report", str(report), "--min-accuracy", "100", "--min-agreement", "100", "--head", "features")
    assert proc.returncode == 65
    assert "gate failed: " in proc.stderr and "no model written" in proc.stderr
    assert not out.exists() and not Path(str(out) + ".json").exists()
    r = json.loads(report.read_text())
    assert r["gate"]["passed"] is False
    assert [m["name"] for m in r["held_out"]] == ["float", "int8 plain"]  # 38 training images: too few for bias correction
    assert any("no bias correction: 38 training images < 100" in n for n in r["notes"])


def test_byte_identical_under_different_threads_and_onednn(shared: Path, tmp_path: Path) -> None:
    """Training + quantization (bias correction included: >= 100 training images) give the same
    bytes whatever the thread count or oneDNN setting; with the scene head (k-means of the empty
    scene, then Adam on a soft maximum over 256 cells after an in-model resize: the least linear fit
    and the longest float path there is, so the one most likely to drift). `train` writes the model
    only after the Engine accepted it with its manifest's self-test, so this also runs it on the device path."""
    images = presence_task(tmp_path / "frames", paths.dev_images(), paths.sample_images() / "owl.jpg", 160, seed=4)  # 52 per class trained on
    digests = []
    for threads, onednn in (("1", "0"), ("2", "1")):
        out = tmp_path / f"m{threads}.tflite"
        env = {"TF_NUM_INTRAOP_THREADS": threads, "OMP_NUM_THREADS": threads, "TF_ENABLE_ONEDNN_OPTS": onednn}
        report = out.with_suffix(".json")
        proc = train(images, out, "--head", "scene-2x", "--min-accuracy", "0", "--min-agreement", "0", "--report", str(report), env=env)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(report.read_text())["held_out"][-1]["name"] == "int8 bias-corrected"
        digests.append(hashlib.sha256(out.read_bytes()).hexdigest())
    assert digests[0] == digests[1]
    # The manifest carries the empty scene for the daemon's moved-camera check (edge/sources/moved.py).
    from edge.model.engine import Engine
    from edge.model.preprocess import load_image
    from edge.model.region import NO_CROP
    from edge.model.viewref import ShiftEstimator

    refs = Engine(out, threads=1).manifest.view_references()
    assert refs is not None and refs.shape[1:] == (64, 64) and 1 <= len(refs) <= 8
    frame, estimator = load_image(sorted((images / "absent").iterdir())[-1], NO_CROP), ShiftEstimator(refs)
    assert estimator.estimate(frame)[0] < 1.0
    assert abs(estimator.estimate(np.roll(frame, 4, axis=1))[0] - 4) < 1.0
    # ... and the daemon, given frames of a camera panned by 6 px, says so once.
    moved = tmp_path / "moved"
    moved.mkdir()
    for i, path in enumerate(sorted((images / "absent").iterdir())[:6]):
        Image.fromarray(np.roll(load_image(path, NO_CROP), 6, axis=1)).save(moved / f"{i}.png")
    source = {"kind": "images", "view_check_s": 0, "images": {"path": str(moved)}}
    config = write_config(
        tmp_path / "config.toml", {"state_dir": str(tmp_path), "model": {"path": str(out)}, "source": source, "sinks": {"stdout": {"enabled": True}}}
    )
    cmd = [sys.executable, "-m", "edge", "run", "--config", str(config)]
    run = subprocess.run(cmd, capture_output=True, text=True, env=os.environ | {"PYTHONPATH": str(REPO)}, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stderr.count("the view is moved by about 6 px of 128 since the model was trained") == 1, run.stderr
