"""The converted model, the engine tests and the daemon on an emulated arm64 Debian, current and legacy runtimes.

One module-scoped run classifies the same images on x86_64 (the host) and on arm64 (bookworm and
trixie chroots under qemu-user, one process per OS, runtime and emulated Pi CPU) and the tests
compare the raw uint8 outputs. Trixie (Python 3.13, NumPy 2.2) has ai-edge-litert only:
tflite-runtime publishes no wheel for Python 3.13, which a test keeps checking. The comparison table is
written to $MNV1_EDGE_TEST_CACHE/arm64-report.md.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge import paths
from edge.convert.dataset import read_labelled
from edge.model.preprocess import list_images
from tests.arm64.arm64_env import CACHE, CPUS, CURRENT, IN_OUT, IN_REPO, IN_SHARED, LEGACY, REPO, TRIXIE, TRIXIE_CURRENT, Arm64, Venv

pytestmark = pytest.mark.arm64

DEV_COUNT = 50
DAEMON_FRAMES = 300
PROBE = "tests/arm64/arm64_probe.py"
MODEL = "mobilenet_v1_0.25_128_int8.tflite"
# The engine and converter-output tests that need no TensorFlow (never installed on a device).
SUITE = (
    "tests/test_engine.py",
    "tests/test_convert.py::test_engine_accepts_the_converted_model",
    "tests/test_convert.py::test_manifest_records_provenance",
    "tests/test_convert.py::test_top1_equals_float_where_float_is_confident",
    "tests/test_convert.py::test_report_meets_the_accuracy_targets",
)
# tflite-runtime 2.14's pip build has no quantized XNNPACK: the Engine refuses it unless
# model.require_xnnpack = false, and then warns once (see the report).
NO_QS8_XNNPACK = "XNNPACK did not take ['CONV_2D', 'DEPTHWISE_CONV_2D']"


@dataclass(frozen=True)
class Run:
    """One probe run: where it ran and with what."""

    arch: str  # "x86_64" or "aarch64"
    cpu: str  # the emulated CPU on aarch64, "host" on x86_64
    runtime: str  # "ai-edge-litert", "tflite-runtime" or "ai-edge-litert without XNNPACK"
    os: str = "bookworm"  # the arm64 chroot's Debian release

    @property
    def name(self) -> str:
        return f"{self.arch}/{self.cpu}/{self.runtime}" + (f"/{self.os}" if self.arch == "aarch64" and self.os != "bookworm" else "")


X86_CURRENT = Run("x86_64", "host", "ai-edge-litert")
X86_LEGACY = Run("x86_64", "host", "tflite-runtime")
X86_BUILTIN = Run("x86_64", "host", "ai-edge-litert without XNNPACK")
ARM_RUNS = tuple(Run("aarch64", cpu, venv.runtime, venv.os.name) for venv in (CURRENT, LEGACY, TRIXIE_CURRENT) for cpu in CPUS)


def images() -> list[Path]:
    return list_images(paths.sample_images()) + list_images(paths.dev_images())[:DEV_COUNT]


@pytest.fixture(scope="module")
def out(arm64: Arm64, converted_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder mounted at /mnt/out, with a copy of the model: a `make model` running meanwhile
    cannot change it between the x86_64 and the arm64 runs."""
    folder = tmp_path_factory.mktemp("arm64")
    shutil.copy(converted_model, folder / MODEL)
    shutil.copy(converted_model.with_name(MODEL + ".json"), folder / (MODEL + ".json"))
    return folder


def venv_of(runtime: str, os_name: str = "bookworm") -> Venv:
    if os_name == TRIXIE.name:
        return TRIXIE_CURRENT
    return CURRENT if runtime == CURRENT.runtime else LEGACY


def probe_command(run: Run, arm64: Arm64, out: Path) -> tuple[list[str], dict[str, str] | None]:
    if run.arch == "aarch64":
        argv = ["python", f"{IN_REPO}/{PROBE}", f"{IN_OUT}/{MODEL}"]
        argv += [f"{IN_SHARED}/{p.relative_to(paths.shared_dir())}" for p in images()]
        return arm64.command(venv_of(run.runtime, run.os), argv, out, run.cpu), None
    python = str(arm64.host_legacy_python) if run == X86_LEGACY else sys.executable
    flags = ["--no-xnnpack"] if run == X86_BUILTIN else []
    env = os.environ | {"PYTHONPATH": str(REPO), "MNV1_EDGE_RUNTIME": venv_of(run.runtime.split()[0]).runtime}
    return [python, str(REPO / PROBE), *flags, str(out / MODEL), *map(str, images())], env


@pytest.fixture(scope="module")
def probes(arm64: Arm64, out: Path) -> dict[Run, dict[str, Any]]:
    """Every run's report; two at a time (CI has 2 cores), the long emulated ones first."""

    def one(run: Run) -> tuple[Run, dict[str, Any]]:
        argv, env = probe_command(run, arm64, out)
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600, check=False)
        assert done.returncode == 0, f"{run.name}: probe failed: {done.stderr[-3000:]}"
        return run, json.loads(done.stdout)

    with ThreadPoolExecutor(2) as pool:
        reports = dict(pool.map(one, (*ARM_RUNS, X86_CURRENT, X86_LEGACY, X86_BUILTIN)))
    write_report(reports, arm64.timings)
    return reports


@dataclass(frozen=True)
class Difference:
    image: str
    max_lsb: int  # largest difference of one class's uint8 output
    top1: tuple[int, int]
    top5_same: bool
    scores: str  # both runs' top-3 (class: score)


def differences(a: dict[str, Any], b: dict[str, Any]) -> list[Difference]:
    found = []
    for x, y in zip(a["results"], b["results"], strict=True):
        assert x["image"] == y["image"]
        if x["raw"] == y["raw"]:
            continue
        raw_x = np.frombuffer(bytes.fromhex(x["raw"]), np.uint8).astype(int)
        raw_y = np.frombuffer(bytes.fromhex(y["raw"]), np.uint8).astype(int)
        top5_x, top5_y = [c for c, _ in x["top5"]], [c for c, _ in y["top5"]]
        scores = " | ".join(", ".join(f"{c}: {s:.4f}" for c, s in r["top5"][:3]) for r in (x, y))
        found.append(Difference(x["image"], int(np.abs(raw_x - raw_y).max()), (top5_x[0], top5_y[0]), top5_x == top5_y, scores))
    return found


def baseline(run: Run) -> Run:
    """What a run is compared with: the other architecture, or the other runtime on x86_64."""
    if run.arch == "aarch64":
        return X86_CURRENT if run.runtime == X86_CURRENT.runtime else X86_LEGACY
    return {X86_LEGACY: X86_CURRENT, X86_BUILTIN: X86_LEGACY}.get(run, run)


def correct_top1(report: dict[str, Any]) -> int:
    truth = {p.name: label for p, label in read_labelled(paths.dev_images())}
    return sum(r["top5"][0][0] == truth.get(r["image"].split("/")[-1]) for r in report["results"])


def write_report(reports: dict[Run, dict[str, Any]], timings: Mapping[str, float]) -> None:
    """A markdown table of every run against its x86_64 counterpart, and every difference."""
    lines = ["| run | compared with | runtime | identical outputs | top-1 same | top-5 same | max diff (1/256) | dev top-1 correct | invoke ms |"]
    lines.append("|---|---|---|---|---|---|---|---|---|")
    detail = []
    for run, report in reports.items():
        base = baseline(run)
        diffs = differences(reports[base], report) if run != base else []
        n = len(report["results"])
        top1 = n - sum(d.top1[0] != d.top1[1] for d in diffs)
        top5 = n - sum(not d.top5_same for d in diffs)
        against = base.name if run != base else "(the reference)"
        lines.append(
            f"| {run.name} | {against} | {report['runtime']} | {n - len(diffs)}/{n} | {top1}/{n} | {top5}/{n} | "
            f"{max((d.max_lsb for d in diffs), default=0)} | {correct_top1(report)}/{DEV_COUNT} | {report['invoke_ms_mean']} |"
        )
        detail += [
            f"- {run.name} vs {base.name}: {d.image}: max diff {d.max_lsb}, top-1 {d.top1}, top-5 same {d.top5_same}: {d.scores}" for d in diffs
        ]
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / "arm64-report.json").write_text(json.dumps({run.name: report for run, report in reports.items()}))
    prepared = ", ".join(f"{step} {seconds} s" for step, seconds in timings.items())
    text = [f"Prepared: {prepared}", "", *lines, "", "Differences (top-3 of each run, class: score):", *detail]
    (CACHE / "arm64-report.md").write_text("\n".join(text) + "\n")


@pytest.mark.parametrize("run", ARM_RUNS, ids=lambda r: f"{r.runtime}-{r.cpu}" + (f"-{r.os}" if r.os != "bookworm" else ""))
def test_arm64_classifies_as_x86_64(run: Run, probes: dict[Run, dict[str, Any]]) -> None:
    """Same runtime, other architecture: same frames, same top-1 and top-5 on every image; the
    outputs themselves may differ by one step of the uint8 output (XNNPACK's x86 and NEON kernels
    round differently), never more."""
    arm, x86 = probes[run], probes[baseline(run)]
    assert arm["machine"] == "aarch64" and x86["machine"] == "x86_64"
    assert [r["frame_sha256"] for r in arm["results"]] == [r["frame_sha256"] for r in x86["results"]], "preprocessing differs"
    if run.runtime == "ai-edge-litert":
        assert arm["delegated_ops"] == x86["delegated_ops"] and arm["delegated_ops"]["CONV_2D"] == 15
    diffs = differences(x86, arm)
    assert [d for d in diffs if d.top1[0] != d.top1[1] or not d.top5_same or d.max_lsb > 1] == []


def test_legacy_runtime_differs_only_by_running_without_xnnpack(probes: dict[Run, dict[str, Any]]) -> None:
    """tflite-runtime 2.14 runs the int8 ops on TFLite's built-in kernels (its pip build has no
    quantized XNNPACK), whose fixed-point requantization rounds differently from XNNPACK's: its
    outputs equal ai-edge-litert's with XNNPACK switched off, bit for bit, on both architectures.
    Top-1 then differs on a few near-tie images (listed in the report)."""
    legacy, builtin, current = probes[X86_LEGACY], probes[X86_BUILTIN], probes[X86_CURRENT]
    assert legacy["runtime"].startswith("tflite-runtime 2.14") and legacy["numpy"].startswith("1.")
    assert legacy["delegated_ops"] == {} and builtin["delegated_ops"] == {}
    assert differences(builtin, legacy) == []
    for cpu in CPUS:
        assert differences(legacy, probes[Run("aarch64", cpu, "tflite-runtime")]) == []
    # where the top-1s differ, each runtime's choice is among the other's top-5 (near-ties)
    top5 = {run: {r["image"]: [c for c, _ in r["top5"]] for r in probes[run]["results"]} for run in (X86_CURRENT, X86_LEGACY)}
    flips = [d for d in differences(current, legacy) if d.top1[0] != d.top1[1]]
    assert [d for d in flips if d.top1[0] not in top5[X86_LEGACY][d.image] or d.top1[1] not in top5[X86_CURRENT][d.image]] == []


def run_inside(arm64: Arm64, venv: Venv, argv: list[str], out: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(arm64.command(venv, argv, out), capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.parametrize("venv", (CURRENT, LEGACY, TRIXIE_CURRENT), ids=lambda v: v.name)
def test_engine_tests_pass_on_arm64(venv: Venv, arm64: Arm64, out: Path) -> None:
    argv = ["python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", IN_REPO, "-m", "not system and not arm64"]
    done = run_inside(arm64, venv, argv + [f"{IN_REPO}/{t}" for t in SUITE], out, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    passed = re.search(r"(\d+) passed", done.stdout)
    assert passed and int(passed.group(1)) >= len(SUITE) and " skipped" not in done.stdout, done.stdout[-500:]


@pytest.mark.parametrize("venv", (CURRENT, LEGACY, TRIXIE_CURRENT), ids=lambda v: v.name)
def test_daemon_runs_on_arm64(venv: Venv, arm64: Arm64, out: Path, probes: dict[Run, dict[str, Any]]) -> None:
    work = out / f"daemon-{venv.name}"
    work.mkdir()
    config = work / "config.toml"
    inside = f"{IN_OUT}/{work.name}"
    config.write_text(
        f'device_id = "arm64-{venv.name}"\nstate_dir = "{inside}/state"\n\n[model]\npath = "{IN_OUT}/{MODEL}"\n'
        f"require_xnnpack = {'false' if venv is LEGACY else 'true'}\n\n"
        f'[source]\nkind = "images"\n\n[source.images]\npath = "{IN_SHARED}/data/samples"\nloop = true\n\n'
        # A record per frame (the defaults vote and publish on change): the test checks every one.
        '[results]\npublish = "every"\nsmoothing = "none"\n\n'
        f'[sinks.file]\nenabled = true\npath = "{inside}/results.jsonl"\nfsync = "never"\n'
    )
    argv = ["python", "-m", "edge", "run", "--config", f"{inside}/config.toml", "--max-frames", str(DAEMON_FRAMES)]
    done = run_inside(arm64, venv, argv, out, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not re.search(r"\b(ERROR|CRITICAL)\b|Traceback", done.stderr), done.stderr[-3000:]
    # the legacy runtime runs without XNNPACK and says so, once
    assert done.stderr.count(NO_QS8_XNNPACK) == (1 if venv is LEGACY else 0), done.stderr[-3000:]
    records = [json.loads(line) for line in (work / "results.jsonl").read_text().splitlines()]
    assert [r["seq"] for r in records] == list(range(DAEMON_FRAMES))
    # every sample image, classified by the daemon on arm64, gets the probe's arm64 top-1
    probe = {r["image"].split("/")[-1]: r["top5"][0][0] for r in probes[Run("aarch64", "cortex-a72", venv.runtime, venv.os.name)]["results"]}
    assert {r["source"] for r in records} == {p.name for p in list_images(paths.sample_images())}
    assert all(r["top_k"][0]["class_index"] == probe[r["source"]] for r in records)


def test_trixie_runs_python_3_13_and_numpy_2_2(probes: dict[Run, dict[str, Any]]) -> None:
    for cpu in CPUS:
        report = probes[Run("aarch64", cpu, "ai-edge-litert", TRIXIE.name)]
        assert report["python"].startswith("3.13.") and report["numpy"].startswith("2.2."), report["python"] + " " + report["numpy"]


def test_tflite_runtime_has_no_wheel_for_trixie(tmp_path: Path) -> None:
    """Said plainly in the README: the legacy runtime cannot exist on Python 3.13. When tflite-runtime
    publishes a cp313 aarch64 wheel this fails, and trixie gets a legacy venv too."""
    platforms = [arg for platform in TRIXIE.platforms for arg in ("--platform", platform)]
    done = subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version", TRIXIE.python, *platforms,
         "--dest", str(tmp_path), "tflite-runtime"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode != 0 and "No matching distribution found for tflite-runtime" in done.stderr, done.stderr[-2000:]
