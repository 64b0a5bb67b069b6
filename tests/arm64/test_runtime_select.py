"""The runtime knob: $MNV1_EDGE_RUNTIME forces ai-edge-litert or tflite-runtime; unset prefers ai-edge-litert."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from edge.errors import ConfigError, ModelError
from edge.model.runtime import RUNTIME_ENV, _check_legacy_numpy, load_runtime


def test_default_prefers_ai_edge_litert(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(RUNTIME_ENV, raising=False)
    assert load_runtime().name == "ai-edge-litert"


@pytest.mark.parametrize("value", ["ai-edge-litert", "ai_edge_litert"])
def test_forcing_the_current_runtime(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(RUNTIME_ENV, value)
    runtime = load_runtime()
    assert runtime.name == "ai-edge-litert" and runtime.version[0].isdigit()


def test_an_unknown_runtime_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RUNTIME_ENV, "tensorflow")
    with pytest.raises(ConfigError, match=rf"{RUNTIME_ENV}='tensorflow': expected one of ai-edge-litert, tflite-runtime"):
        load_runtime()


@pytest.mark.skipif(importlib.util.find_spec("tflite_runtime") is not None, reason="tflite-runtime is installed here")
def test_forcing_a_missing_runtime_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RUNTIME_ENV, "tflite-runtime")
    with pytest.raises(ModelError, match=rf"{RUNTIME_ENV}=tflite-runtime but it is not importable"):
        load_runtime()


@pytest.mark.skipif(int(np.__version__.split(".")[0]) < 2, reason="needs NumPy 2 installed")
def test_legacy_runtime_under_numpy_2_is_refused_with_the_fix() -> None:
    # tflite-runtime 2.14 imports under NumPy 2, then its Interpreter dies with a SystemError
    with pytest.raises(ModelError, match=r"tflite-runtime 2\.14\.0 needs numpy<2.*pip install 'numpy<2'"):
        _check_legacy_numpy("2.14.0")
    _check_legacy_numpy("2.15.0")  # a later build would be built against NumPy 2
