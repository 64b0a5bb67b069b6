"""Which images calibrate the model: the first of a folder, or the calibration half of a labelled one."""

from __future__ import annotations

from pathlib import Path

from edge.convert.dataset import select
from edge.errors import SourceError
from edge.model.preprocess import list_images


def calibration_paths(folder: Path, count: int, labelled: list[Path] | None = None) -> list[Path]:
    """The first `count` images of the folder, or of the calibration half of its `labelled` images
    (labels.csv order) when it also supplies the held-out half; a clear error for a missing or empty folder."""
    if not folder.is_dir():
        raise SourceError(f"{folder}: calibration folder not found; pass --calibration DIR with images")
    images = list_images(folder) if labelled is None else select(labelled, "calibration")
    if not images:
        raise SourceError(f"{folder}: no images (.jpg/.png/.bmp ...) to calibrate on")
    return images[:count]
