"""Where the shared data lives (models, images), overridable by MNV1_EDGE_SHARED."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_dir() -> Path:
    """The shared data folder: $MNV1_EDGE_SHARED, else ../shared beside the checkout."""
    env = os.environ.get("MNV1_EDGE_SHARED")
    if env:
        return Path(env)
    return REPO_ROOT.parent / "shared"


def float_model() -> Path:
    return shared_dir() / "models" / "mobilenet_v1_0.25_128.tflite"


def reference_quant_model() -> Path:
    return shared_dir() / "models" / "mobilenet_v1_0.25_128_quant.tflite"


def labels_file() -> Path:
    return shared_dir() / "models" / "imagenet_labels.txt"


def dev_images() -> Path:
    return shared_dir() / "data" / "imagenet-dev"


def sample_images() -> Path:
    return shared_dir() / "data" / "samples"


def default_model() -> Path:
    """The converted model `make model` writes."""
    return REPO_ROOT / "models" / "mobilenet_v1_0.25_128_int8.tflite"
