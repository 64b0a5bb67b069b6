"""Shared fixtures: the data in ../shared, the converted model, a reference model with a manifest."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edge import paths

pytest_plugins = ["tests.support.fixtures"]


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
def converted_model(shared: Path) -> Path:
    """The model `make model` converts (the test command builds it before pytest runs)."""
    model = paths.default_model()
    if not model.is_file():
        pytest.fail(f"{model}: not built; run `make model` (the test command does)")
    return model
