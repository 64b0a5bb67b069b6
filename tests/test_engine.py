"""The engine on a real model: contract checks, XNNPACK, dequantization, self-test, manifest binding."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge import paths
from edge.errors import ModelError
from edge.model.contract import NUM_CLASSES, dequantize, dequantize_table, top_k
from edge.model.engine import Engine
from edge.model.interpreter import Interpreter
from edge.model.manifest import manifest_path
from edge.model.preprocess import load_image
from edge.model.runtime import delegated_op_counts


def test_reference_model_classifies_a_parrot(reference_model: Path, xnnpack_runtime: bool) -> None:
    engine = Engine(reference_model, require_xnnpack=xnnpack_runtime)
    if xnnpack_runtime:
        assert engine.delegated["CONV_2D"] == 15 and engine.delegated["DEPTHWISE_CONV_2D"] == 13
    scores = engine.classify(load_image(paths.sample_images() / "parrot.jpg"))
    assert scores.dtype == np.float32 and scores.shape == (NUM_CLASSES,)
    # uint8 softmax with scale 1/256: the scores sum to ~1, which raw/255 would not give exactly
    assert abs(float(scores.sum()) - 1.0) < 0.05
    assert engine.top_k(scores, 1)[0].label == "macaw"


def test_ties_go_to_the_lower_class_index() -> None:
    scores = np.zeros(1001, np.float32)
    scores[[7, 3, 500]] = 0.25
    assert [p.class_index for p in top_k(scores, tuple(map(str, range(1001))), 3)] == [3, 7, 500]


def test_manifest_of_another_model_is_refused(reference_model: Path, tmp_path: Path) -> None:
    model = tmp_path / "m.tflite"
    shutil.copy(paths.float_model(), model)
    shutil.copy(manifest_path(reference_model), manifest_path(model))
    with pytest.raises(ModelError, match="manifest belongs to another model"):
        Engine(model)


def test_missing_model_and_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="model file not found"):
        Engine(tmp_path / "nope.tflite")
    model = tmp_path / "m.tflite"
    shutil.copy(paths.reference_quant_model(), model)
    with pytest.raises(ModelError, match="manifest missing"):
        Engine(model)


def test_pinned_sha256_mismatch(reference_model: Path) -> None:
    with pytest.raises(ModelError, match=r"does not match the pinned model\.sha256"):
        Engine(reference_model, expected_sha256="0" * 64)


def test_self_test_catches_a_wrong_expectation(reference_model: Path, tmp_path: Path, xnnpack_runtime: bool) -> None:
    model = tmp_path / "m.tflite"
    shutil.copy(reference_model, model)
    data = json.loads(manifest_path(reference_model).read_text())
    data["self_test"]["top1"] = (data["self_test"]["top1"] + 1) % 1001
    manifest_path(model).write_text(json.dumps(data))
    with pytest.raises(ModelError, match="self-test failed"):
        Engine(model, require_xnnpack=xnnpack_runtime)


def test_not_a_tflite_file(tmp_path: Path, reference_model: Path) -> None:
    model = tmp_path / "junk.tflite"
    model.write_bytes(b"this is not a flatbuffer" * 100)
    shutil.copy(manifest_path(reference_model), manifest_path(model))
    data = json.loads(manifest_path(model).read_text())
    from edge.fsutil import sha256_file

    data["model_sha256"] = sha256_file(model)
    manifest_path(model).write_text(json.dumps(data))
    with pytest.raises(ModelError, match="not a loadable TFLite model"):
        Engine(model)


def test_one_dequantize_formula_for_the_table_and_the_arrays() -> None:
    """The engine's 256-entry table is pycoral's scale * (q - zero_point), value for value."""
    every_uint8 = np.arange(256, dtype=np.uint8)
    for quantization in [(1 / 256, 0), (0.0234, 128), (0.1, -3)]:
        table = dequantize_table(quantization)
        assert table.dtype == np.float32 and np.array_equal(table[every_uint8], dequantize(every_uint8, quantization))
    assert float(dequantize(np.array([3], np.uint8), (0.5, 5))[0]) == -1.0  # widened first: no uint8 wrap-around
    mean = np.array([130.25])
    assert float(dequantize(mean, (0.5, 128), np.float64)[0]) == 0.5 * (130.25 - 128)


def test_builtin_kernels_run_without_xnnpack_and_agree_on_the_top_1(shared: Path) -> None:
    frame = load_image(paths.sample_images() / "parrot.jpg")
    builtin = Interpreter(paths.reference_quant_model(), builtin_kernels=True)
    default = Interpreter(paths.reference_quant_model())
    assert delegated_op_counts(builtin.raw)[0] == {}
    assert int(np.argmax(builtin.classify(frame))) == int(np.argmax(default.classify(frame))) == 89  # macaw
