"""The calibration/evaluation split of an image folder and loading it with the device's preprocessing."""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from edge.errors import SourceError
from edge.model.preprocess import list_images, load_image

# The fixed, documented split of a labelled folder that supplies both halves: its labels.csv rows in
# file-name order, even positions (0, 2, 4, ...) calibrate and odd positions are held out for the
# report. Both halves come from that one list, so they are disjoint whatever else the folder holds;
# interleaving keeps both spread over all classes (the dev folder is sorted by synset).
SPLITS = ("all", "calibration", "held-out")
T = TypeVar("T")


def select(images: list[T], split: str) -> list[T]:
    if split == "calibration":
        return images[0::2]
    if split == "held-out":
        return images[1::2]
    if split == "all":
        return images
    raise ValueError(f"unknown split {split!r}")


@dataclass(frozen=True)
class ImageSet:
    paths: tuple[Path, ...]
    frames: np.ndarray  # N x 128 x 128 x 3 uint8
    skipped: tuple[str, ...]  # one line per unreadable image

    def digest(self) -> str:
        """Identifies the calibration set: names and bytes of the images actually used."""
        h = hashlib.sha256()
        for path in self.paths:
            h.update(path.name.encode() + b"\0")
            h.update(hashlib.sha256(path.read_bytes()).digest())
        return h.hexdigest()


def calibration_paths(folder: Path, count: int, labelled: list[Path] | None = None) -> list[Path]:
    """The first `count` images of the folder, or of the calibration half of its `labelled` images
    (labels.csv order) when it also supplies the held-out half; a clear error for a missing or empty folder."""
    if not folder.is_dir():
        raise SourceError(f"{folder}: calibration folder not found; pass --calibration DIR with images")
    images = list_images(folder) if labelled is None else select(labelled, "calibration")
    if not images:
        raise SourceError(f"{folder}: no images (.jpg/.png/.bmp ...) to calibrate on")
    return images[:count]


def load(paths: list[Path], label: str, minimum: int) -> ImageSet:
    """Decode images with the device's preprocessing; corrupt ones are skipped and counted."""
    frames: list[np.ndarray] = []
    kept: list[Path] = []
    skipped: list[str] = []
    bar = Progress(label, len(paths))
    for path in paths:
        try:
            frames.append(load_image(path))
            kept.append(path)
        except SourceError as exc:
            skipped.append(str(exc))
        bar.step()
    bar.done(f"{len(kept)} loaded, {len(skipped)} skipped as unreadable")
    if len(kept) < minimum:
        where = paths[0].parent if paths else "?"
        raise SourceError(f"{where}: only {len(kept)} readable {label} images ({len(skipped)} unreadable), need at least {minimum}")
    stack = np.stack(frames) if frames else np.zeros((0, 128, 128, 3), np.uint8)
    return ImageSet(tuple(kept), stack, tuple(skipped))


class Progress:
    """A one-line progress bar on stderr (a few plain lines when stderr is not a terminal)."""

    def __init__(self, label: str, total: int, width: int = 30) -> None:
        self.label, self.total, self.width, self.n = label, max(total, 1), width, 0
        self.tty = sys.stderr.isatty()
        self._last_quarter = -1

    def step(self) -> None:
        self.n += 1
        if self.tty:
            filled = self.width * self.n // self.total
            sys.stderr.write(f"\r{self.label:<22} [{'#' * filled}{'.' * (self.width - filled)}] {self.n}/{self.total}")
            sys.stderr.flush()
        elif (quarter := 4 * self.n // self.total) != self._last_quarter and quarter < 4:
            self._last_quarter = quarter
            print(f"{self.label}: {self.n}/{self.total}", file=sys.stderr, flush=True)

    def done(self, note: str = "") -> None:
        end = f" {note}" if note else ""
        if self.tty:
            sys.stderr.write("\n")
        print(f"{self.label}: {self.n}/{self.total} done{end}", file=sys.stderr, flush=True)
