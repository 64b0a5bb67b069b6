"""Shared fixtures: the data in ../shared, the converted model, a reference model with a manifest."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edge import paths

pytest_plugins = ["tests.support.fixtures"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The emulated Pi last: the slowest stage, so that every other stage has reported before it starts."""
    items.sort(key=lambda item: item.get_closest_marker("pi") is not None)  # stable: the rest keep their order


@pytest.fixture(scope="session")
def shared() -> Path:
    root = paths.shared_dir()
    if not (root / "models").is_dir():
        pytest.fail(f"{root}: shared data missing; set MNV1_EDGE_SHARED to the shared folder")
    return root


@pytest.fixture(scope="session")
def xnnpack_runtime() -> bool:
    """Whether this runtime delegates int8 models to XNNPACK (the legacy tflite-runtime 2.14 does not)."""
    from edge.model.runtime import load_runtime

    return load_runtime().name == "ai-edge-litert"


@pytest.fixture(scope="session")
def reference_model(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Google's uint8 model with a manifest of ours: same input/output contract as our own."""
    from edge.convert.manifest import make_manifest, read_labels, write_manifest
    from edge.model.preprocess import list_images

    model = tmp_path_factory.mktemp("ref") / "reference_quant.tflite"
    shutil.copy(paths.reference_quant_model(), model)
    write_manifest(model, make_manifest(model, read_labels(paths.labels_file()), list_images(paths.sample_images())))
    return model


@pytest.fixture(scope="session")
def head_models(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every head `train` writes (<head>.tflite with manifest), trained once per session on the tiny
    parrot task, and frames.npy, its 60 frames: tests/support/kernel_models.py."""
    import os
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("heads")
    env = os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parent.parent), "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-m", "tests.support.kernel_models", str(out)], capture_output=True, text=True, env=env, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@pytest.fixture(scope="session")
def converted_model(shared: Path) -> Path:
    """The model `make model` converts (the test command builds it before pytest runs)."""
    model = paths.default_model()
    if not model.is_file():
        pytest.fail(f"{model}: not built; run `make model` (the test command does)")
    return model
