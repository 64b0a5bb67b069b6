"""Labelled image folders: labels.csv, the calibration/held-out split, loading with progress."""

from __future__ import annotations

import csv
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from edge.errors import SourceError
from edge.model.contract import INPUT_SHAPE, NUM_CLASSES
from edge.model.preprocess import STOCK_CROP, load_image

LABELS_CSV = "labels.csv"
CSV_COLUMNS = ("file", "synset", "class_index", "class_name")

# The fixed, documented split of a labelled folder that supplies both halves: its labels.csv rows in
# file-name order, even positions (0, 2, 4, ...) calibrate and odd positions are held out for the
# report. Both halves come from that one list, so they are disjoint whatever else the folder holds;
# interleaving keeps both spread over all classes (the dev folder is sorted by synset).
SPLITS = ("all", "calibration", "held-out")
T = TypeVar("T")


def read_labelled(folder: Path) -> list[tuple[Path, int]]:
    """(image path, class index) from DIR/labels.csv (columns file,synset,class_index,class_name), in file-name order."""
    csv_path = Path(folder) / LABELS_CSV
    rows: list[tuple[Path, int]] = []
    line = 1
    try:
        with open(csv_path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or not set(CSV_COLUMNS) <= set(reader.fieldnames):
                raise SourceError(f"{csv_path}: expected columns {','.join(CSV_COLUMNS)}, got {reader.fieldnames}")
            for row in reader:
                line = reader.line_num
                index = int(row["class_index"])
                if not 0 <= index < NUM_CLASSES:  # else every such image silently counts as a miss
                    raise ValueError(f"class_index {index} out of range 0-{NUM_CLASSES - 1}")
                rows.append((Path(folder) / row["file"], index))
    except FileNotFoundError as exc:
        raise SourceError(f"{csv_path}: missing; a labelled folder needs labels.csv ({','.join(CSV_COLUMNS)})") from exc
    except OSError as exc:  # a folder named labels.csv, no permission, an I/O error
        raise SourceError(f"{csv_path}: cannot read ({exc.strerror or exc})") from exc
    except (ValueError, KeyError, TypeError, csv.Error) as exc:  # a short row's missing columns are None: TypeError
        raise SourceError(f"{csv_path}: malformed row at line {line} ({exc})") from exc
    if not rows:
        raise SourceError(f"{csv_path}: no labelled images")
    return sorted(rows)


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
    frames: np.ndarray  # N x 128 x 128 x 3 uint8 (INPUT_SHAPE without the batch)
    skipped: tuple[str, ...]  # one line per unreadable image

    def digest(self) -> str:
        """Identifies the calibration set: names and bytes of the images actually used."""
        h = hashlib.sha256()
        for path in self.paths:
            h.update(path.name.encode() + b"\0")
            h.update(hashlib.sha256(path.read_bytes()).digest())
        return h.hexdigest()


def load(paths: list[Path], label: str, minimum: int) -> ImageSet:
    """Decode images with the device's preprocessing; corrupt ones are skipped and counted."""
    frames: list[np.ndarray] = []
    kept: list[Path] = []
    skipped: list[str] = []
    bar = Progress(label, len(paths))
    for path in paths:
        try:
            frames.append(load_image(path, STOCK_CROP))
            kept.append(path)
        except SourceError as exc:
            skipped.append(str(exc))
        bar.step()
    bar.done(f"{len(kept)} loaded, {len(skipped)} skipped as unreadable")
    if len(kept) < minimum:
        where = paths[0].parent if paths else "?"
        what = label.removesuffix(" images")  # "evaluation images" read "… readable evaluation images images"
        raise SourceError(f"{where}: only {len(kept)} readable {what} images ({len(skipped)} unreadable), need at least {minimum}")
    stack = np.stack(frames) if frames else np.zeros((0, *INPUT_SHAPE[1:]), np.uint8)
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


def load_labelled(folder: Path, split: str = "all") -> tuple[list[Path], np.ndarray, list[int]]:
    """Paths, frames and labels of a labelled folder (optionally the converter's split of it)."""
    rows = select(read_labelled(folder), split)
    images = load([p for p, _ in rows], "evaluation images", minimum=1)
    if len(images.paths) != len(rows):
        raise SourceError(f"{folder}: {len(rows) - len(images.paths)} labelled images are unreadable: {images.skipped[0]}")
    return [p for p, _ in rows], images.frames, [c for _, c in rows]
