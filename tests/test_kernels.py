"""XNNPACK against TFLite's own kernels: the converter's split of long int8 means, the manifest's probe frames, the Engine's check at load."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge.convert import flatbuf, reductions
from edge.convert.manifest import PROBES, _probe_order
from edge.errors import ModelError
from edge.model import kernels
from edge.model.engine import Engine
from edge.model.manifest import KernelProbes, load_manifest, manifest_path
from tests.support.kernel_models import half_brightness_model, half_frames


def test_a_mean_over_a_long_contiguous_run_is_split_in_two() -> None:
    """Which means XNNPACK would sum as one run longer than SAFE_RUN, and how they are split."""
    assert reductions._outer_axes([1, 128, 128, 3], (1, 2, 3)) == (1, 2)  # the change head's standardisation
    assert reductions._outer_axes([1, 2, 8192, 3], (2, 3)) == (2,)
    assert reductions._outer_axes([1, 128, 128, 3], (1, 2)) is None  # the channels are kept: rdsum
    assert reductions._outer_axes([1, 32, 32, 3], (1, 2, 3)) is None  # 3072 values: short enough
    assert reductions._outer_axes([1, 2, 8192], (2,)) is None  # one axis alone too long: nothing to split off
    assert reductions._outer_axes([1, 64, 1, 192], (1, 2, 3)) == (1,)  # size-1 axes merge away, as in XNNPACK


def test_the_split_mean_computes_what_the_whole_one_did() -> None:
    """Two means in place of one, each within a step of the original on the reference kernels, and
    XNNPACK on this CPU within a step of them (whatever its kernels)."""
    data, frames = half_brightness_model(), np.stack(half_frames())
    split = reductions.split_long_means(data, frames)
    model = flatbuf.read(split, "split")
    sg = model.subgraphs[0]
    means = [op for op in sg.operators if flatbuf.opcode(model, op) == flatbuf.MEAN]
    assert len(means) == 2 and [int(n) for n in sg.tensors[int(means[0].outputs[0])].shape] == [1, 2, 1, 3]
    assert reductions.find(model) == []
    whole = kernels.raw_outputs(kernels.interpreter(data, "reference"), frames).astype(int)
    for kind in kernels.KERNELS:
        got = kernels.raw_outputs(kernels.interpreter(split, kind), frames).astype(int)
        assert got.shape == whole.shape and np.abs(got - whole).max() <= 1, kind


def test_a_model_without_long_means_keeps_its_bytes(converted_model: Path) -> None:
    data = converted_model.read_bytes()
    assert reductions.split_long_means(data, np.stack(half_frames())) is data


def test_cpu_features_name_what_picks_the_int8_kernels(tmp_path: Path) -> None:
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nflags\t\t: fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi2\n\nprocessor\t: 1\n")
    vnni = tmp_path / "vnni"
    vnni.write_text("flags\t\t: sse2 ssse3 avx avx2 avx512f avx512bw avx512_vnni\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics asimddp\nCPU part\t: 0xd0b\n")
    features = [kernels.cpu_features(p).split(" ", 1)[1] for p in (x86, vnni, arm)]
    assert features == ["AVX2, no AVX-512, no VNNI", "AVX2, AVX-512, VNNI", "Cortex-A76 asimd dotprod"]


def test_probes_are_confident_frames_of_every_class_in_turn() -> None:
    """After the self-test's (the widest margin), per class the narrowest margin that is still
    PROBE_MARGIN wide; narrower ones only when nothing else is left, the widest of those first."""
    margins = [0.99, 0.9, 0.6, 0.55, 0.3, 0.52, 0.1, 0.2]
    classes = [1, 1, 1, 0, 0, 0, 1, 1]
    assert _probe_order(margins, classes) == [0, 5, 2, 3, 1, 4, 7, 6]  # class 0 first: its narrowest eligible margin is the narrowest


def test_the_converted_model_carries_probes_and_xnnpack_agrees_here(converted_model: Path) -> None:
    manifest = load_manifest(converted_model)
    probes = manifest.kernel_check
    assert probes is not None and len(probes.frames()) == PROBES and all(f.shape == (128, 128, 3) for f in probes.frames())
    assert kernels.MIN_BOUND <= probes.bound <= kernels.MAX_BOUND
    assert probes.measured["builtin_vs_reference"]["top1_differs"] == 0
    reference = probes.reference_outputs()  # recorded at conversion: the Engine runs XNNPACK alone at load
    assert reference is not None and reference.shape == (PROBES + 1, 1001) and reference.dtype == np.uint8
    engine = Engine(converted_model)
    assert engine.kernels == "xnnpack" and engine.kernel_check is not None and engine.kernel_check.agrees
    assert engine.kernel_check.comparison.frames == PROBES + 1
    facts = engine.describe()
    assert facts["kernels"] == "XNNPACK"
    assert facts["kernel_check"].startswith(f"XNNPACK agrees with TFLite's reference kernels on {PROBES + 1} frames")


def test_a_manifest_without_probes_checks_the_self_test_frame(converted_model: Path, tmp_path: Path) -> None:
    """Manifests written before the probes: the self-test frame alone, against the built-in kernels
    run here, with kernels.MIN_BOUND."""
    model = tmp_path / "m.tflite"
    shutil.copy(converted_model, model)
    data = json.loads(manifest_path(converted_model).read_text())
    del data["kernel_check"]
    manifest_path(model).write_text(json.dumps(data))
    check = Engine(model).kernel_check
    assert check is not None and check.comparison.frames == 1 and check.bound == kernels.MIN_BOUND


def test_a_damaged_probe_strip_is_the_manifests_fault(converted_model: Path, tmp_path: Path) -> None:
    model = tmp_path / "m.tflite"
    shutil.copy(converted_model, model)
    data = json.loads(manifest_path(converted_model).read_text())
    short = KernelProbes.from_frames([np.zeros((64, 128, 3), np.uint8)], 8, np.zeros((2, 1001)), {})
    data["kernel_check"]["frames_png_base64"] = short.frames_png_base64
    manifest_path(model).write_text(json.dumps(data))
    with pytest.raises(ModelError, match=r"m\.tflite\.json: kernel_check frames are 128x64, expected 128 high"):
        Engine(model)
    assert Engine(model, check_kernels=False).kernel_check is None


def test_the_kernel_gate_refuses_when_xnnpack_answers_otherwise() -> None:
    """The gates' floor on top-1 agreement; what the refusal says."""
    from edge.convert.kernelgate import agreement

    reference = np.tile(np.array([[200, 55]], np.uint8), (10, 1))
    xnnpack = reference.copy()
    xnnpack[:3] = [[40, 215]]  # 3 of 10 answer the other class
    ok, bad = agreement(reference, reference), agreement(reference, xnnpack, 80.0)
    assert ok.passed and ok.failures() == [] and ok.top1_agreement == 100.0
    assert not bad.passed and (bad.top1_agreement, bad.max_diff, bad.frames) == (70.0, 160, 10)
    assert kernels.compare(xnnpack, reference).decisive == 3  # both lead by >= DECISIVE_LEAD: no near-ties
    nudged = reference.copy()
    nudged[:3] = [[120, 135]]  # another top-1, but a near-tie
    assert kernels.compare(nudged, reference) == kernels.Comparison(10, 3, 80, 0)
    near_tie = reference.copy()
    near_tie[:1] = [[126, 129]]  # rounding's flip: a few steps from a tie, within the manifest's bound
    assert kernels.KernelCheck(kernels.compare(near_tie[:1], near_tie[:1].astype(int) + np.array([[4, -4]])), 16, "cpu", 1.0).agrees
    assert not kernels.KernelCheck(kernels.compare(xnnpack, reference), 16, "cpu", 1.0).agrees
    assert bad.failures()[0].startswith(f"XNNPACK on this CPU ({kernels.cpu_features()}) gives the reference kernels' top-1 on only 70.0% of 10")


def test_reference_outputs_that_do_not_fit_the_frames_are_the_manifests_fault(converted_model: Path, tmp_path: Path) -> None:
    model = tmp_path / "m.tflite"
    shutil.copy(converted_model, model)
    data = json.loads(manifest_path(converted_model).read_text())
    data["kernel_check"]["reference_outputs_hex"] = data["kernel_check"]["reference_outputs_hex"][:-1]
    manifest_path(model).write_text(json.dumps(data))
    with pytest.raises(ModelError, match=rf"kernel_check has {PROBES} reference outputs for {PROBES + 1} frames"):
        Engine(model)
