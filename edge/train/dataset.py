"""The folder-per-class image set: checks with one clear line each, loading with capture times, the held-out split (in time, or at random)."""

from __future__ import annotations

import calendar
import hashlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from edge.errors import SourceError
from edge.model import decode
from edge.model.preprocess import IMAGE_SUFFIXES, INPUT_SIZE

# DIR/<class name>/<images>, the layout of Keras `image_dataset_from_directory`, Teachable Machine
# and Edge Impulse. Class order = sorted folder names, so the model's class indices do not depend on
# the file system's listing order.


class DatasetError(SourceError):
    """A training folder that cannot make a model: exit 65 (data error), not 69 (unavailable)."""

    exit_code = 65


@dataclass(frozen=True)
class Limits:
    min_per_class: int = 10  # fewer cannot be split into training and held-out images that mean anything
    max_imbalance: float = 4.0  # largest class / smallest class without --allow-imbalance
    allow_imbalance: bool = False
    min_side: int = INPUT_SIZE  # the crop must not be upscaled into the model's input


@dataclass(frozen=True)
class Loaded:
    classes: tuple[str, ...]
    frames: np.ndarray  # N x 128 x 128 x 3 uint8, as the model sees them
    labels: np.ndarray  # N int64 class indices
    paths: tuple[Path, ...]
    skipped: tuple[str, ...]  # one line per unreadable image
    times: np.ndarray  # N float64: capture time, epoch seconds (frame_time)
    named: int = 0  # how many of the times come from `capture`'s file names (the others: file times)


# `mnv1-edge capture` names a frame by its UTC capture time: 20261129-081114.011179.jpg, with -1,
# -2, ... when two fall in the same microsecond. Other files have only their modification time
# (which copying with `cp -p`, rsync -t or unzip keeps).
CAPTURE_NAME = re.compile(r"(\d{8}-\d{6})\.(\d{6})(?:-\d+)?\.jpe?g", re.IGNORECASE)


def frame_time(path: Path) -> tuple[float, bool]:
    """(capture time in epoch seconds, whether it came from the file name): `capture`'s UTC name, else the file time."""
    match = CAPTURE_NAME.fullmatch(path.name)
    if match:
        try:
            stamp = time.strptime(match.group(1), "%Y%m%d-%H%M%S")
        except ValueError:
            pass  # digits in the shape of a time that is none (month 13): the file time then
        else:
            return calendar.timegm(stamp) + int(match.group(2)) / 1e6, True
    try:
        return path.stat().st_mtime, False
    except OSError:  # read a moment ago; gone now: last in time, it will be held out, not trained on
        return float("inf"), False


def class_folders(root: Path) -> list[tuple[str, Path]]:
    """(class name, folder) sorted by name; rejects what cannot become a label."""
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder; pass --images DIR with one sub-folder of images per class")
    try:
        entries = sorted(os.scandir(os.fsencode(root)), key=lambda e: e.name)
    except OSError as exc:
        raise DatasetError(f"{root}: cannot list ({exc.strerror})") from exc
    found: list[tuple[str, Path]] = []
    seen: dict[str, str] = {}
    for entry in entries:
        try:
            is_dir = entry.is_dir()
        except OSError as exc:  # a link that loops or dangles into nowhere readable
            shown = os.fsdecode(entry.path)
            raise DatasetError(f"{shown}: cannot read this entry of the images folder ({exc.strerror}); fix or remove it") from exc
        if not is_dir or entry.name.startswith(b"."):
            continue
        try:
            name = entry.name.decode("utf-8")
        except UnicodeDecodeError:
            raise DatasetError(f"{root}: class folder {entry.name!r} is not valid UTF-8; rename it (class names become labels)") from None
        key = name.strip().casefold()
        if not key:
            raise DatasetError(f"{root}: class folder {name!r} has a blank name; rename it")
        if key in seen:
            raise DatasetError(f"{root}: class folders {seen[key]!r} and {name!r} name the same class; merge or rename one")
        seen[key] = name
        found.append((name, Path(os.fsdecode(entry.path))))
    if not found:
        raise DatasetError(f"{root}: no class folders; put each class's images in DIR/<class name>/")
    if len(found) == 1:
        raise DatasetError(f"{root}: only one class ({found[0][0]!r}); a classifier needs at least two (e.g. add a 'none' folder)")
    if len(found) > 1001:
        raise DatasetError(f"{root}: {len(found)} classes; at most 1001 are supported")
    return found


def image_files(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    except OSError as exc:
        raise DatasetError(f"{folder}: cannot list ({exc.strerror})") from exc


def _no_images(folder: Path, name: str) -> DatasetError:
    """A class folder without images; when they sit in sub-folders (cat/2024/*.jpg), say that
    those are not searched."""
    nested = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".") and image_files(p))
    hint = f"; sub-folders are not searched: move the images in {', '.join(n + '/' for n in nested[:3])} up into {folder}/" if nested else ""
    return DatasetError(f"{folder}: class {name!r} has no image files ({', '.join(IMAGE_SUFFIXES)}){hint}")


def load(root: Path, limits: Limits, fraction: float) -> Loaded:
    """Decode every image (corrupt ones skipped and counted) and check counts and balance."""
    from edge.model.preprocess import prepare
    from edge.model.region import Crop

    classes = class_folders(root)
    frames: list[np.ndarray] = []
    labels: list[int] = []
    kept: list[Path] = []
    times: list[tuple[float, bool]] = []
    skipped: list[str] = []
    too_small: list[str] = []
    for index, (name, folder) in enumerate(classes):
        files = image_files(folder)
        if not files:
            raise _no_images(folder, name)
        good = 0
        for path in files:
            image, problem = _decode(path, int(np.ceil(limits.min_side / fraction)))
            if image is None:
                skipped.append(problem)
                continue
            if min(image.size) * fraction < limits.min_side:
                too_small.append(f"{path} is {image.size[0]}x{image.size[1]}")
                continue
            frames.append(np.asarray(prepare(image, Crop(fraction=fraction))))
            labels.append(index)
            kept.append(path)
            times.append(frame_time(path))
            good += 1
        if good == 0 and not too_small:
            raise DatasetError(f"{folder}: class {name!r} has no readable image ({len(files)} unreadable)")
    if too_small:
        need = int(np.ceil(limits.min_side / fraction))
        raise DatasetError(
            f"{too_small[0]}: too small for the {INPUT_SIZE}x{INPUT_SIZE} input after a {fraction:g} crop "
            f"(needs >= {need} px on the short side; {len(too_small)} such images)"
        )
    names = tuple(name for name, _ in classes)
    _check_counts(names, np.asarray(labels, np.int64), limits, len(skipped))
    stamps = np.asarray([t for t, _ in times], np.float64)
    return Loaded(names, np.stack(frames), np.asarray(labels, np.int64), tuple(kept), tuple(skipped), stamps, sum(n for _, n in times))


def _decode(path: Path, need: int) -> tuple[Image.Image | None, str]:
    """The image upright in 8-bit RGB (edge.model.decode, as `classify` and the daemon read it); JPEGs
    decode in libjpeg's draft mode at 1/2..1/8 scale while the short side stays >= `need` (a phone's
    12 MP photo costs a fraction of a full decode); one over the decode budget is skipped unread."""
    try:
        return decode.decode(path, lambda w, h: (need, need)), ""
    except SourceError as exc:
        return None, str(exc)


def _check_counts(classes: tuple[str, ...], labels: np.ndarray, limits: Limits, skipped: int) -> None:
    counts = np.bincount(labels, minlength=len(classes))
    short = [f"{name!r} has {n}" for name, n in zip(classes, counts, strict=True) if n < limits.min_per_class]
    if short:
        note = f" ({skipped} unreadable images skipped)" if skipped else ""
        raise DatasetError(f"too few images: {', '.join(short)}; each class needs at least {limits.min_per_class} readable images{note}")
    ratio = float(counts.max()) / float(counts.min())
    if ratio > limits.max_imbalance and not limits.allow_imbalance:
        big, small = classes[int(counts.argmax())], classes[int(counts.argmin())]
        raise DatasetError(
            f"classes are imbalanced: {big!r} has {counts.max()} images, {small!r} {counts.min()} ({ratio:.1f}x > {limits.max_imbalance:g}x); "
            "add images or pass --allow-imbalance if the imbalance is intended"
        )


@dataclass(frozen=True)
class Split:
    train: np.ndarray  # indices, ascending
    held_out: np.ndarray  # indices, ascending
    gap: np.ndarray  # indices used for neither (in time: the frames between the two)
    how: str  # the report's sentence
    in_time: bool = True  # cross-validation folds are stretches of time too

    def folds(self, data: Loaded, count: int) -> np.ndarray:
        """The cross-validation fold of each training image, in `train`'s order: in time, each
        class's training frames cut into `count` contiguous runs (a fold is a stretch of time, so a
        frame's near-duplicate neighbours sit mostly on its own side); at random, every count-th."""
        if not self.in_time:
            return np.arange(len(self.train)) % count
        folds = np.empty(len(self.train), np.int64)
        for cls in np.unique(data.labels[self.train]):
            members = np.flatnonzero(data.labels[self.train] == cls)
            order = members[_in_time(data, self.train[members])]
            folds[order] = np.arange(len(order)) * count // len(order)
        return folds


def _in_time(data: Loaded, indices: np.ndarray) -> np.ndarray:
    """The positions of `indices` sorted by capture time (ties, and equal file times, by file name)."""
    return np.asarray(sorted(range(len(indices)), key=lambda k: (data.times[indices[k]], data.paths[indices[k]].name)), np.int64)


def visits(data: Loaded, indices: np.ndarray) -> dict[str, int]:
    """Per class, how many stretches of time its frames among `indices` form: in capture order
    over every class, a run of one class's frames that another class's frames end (someone came
    and went). Frames of one pass are near-duplicates in time however many there are."""
    ordered = data.labels[indices[_in_time(data, indices)]]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    return {c: int(np.sum(ordered[starts] == i)) for i, c in enumerate(data.classes)}


def split_in_time(data: Loaded, held_out: float, gap: float) -> Split:
    """Within each class, frames in capture order: the latest `held_out` share held out, the `gap`
    share just before them (at least one frame when `gap` > 0) used for neither, so that the last
    training frame is not the first held-out frame's neighbour a second earlier. What the model
    will meet is later frames; frames seconds apart on both sides of a random split make the
    held-out figure what the model remembers, not what it will do."""
    train: list[int] = []
    test: list[int] = []
    between: list[int] = []
    for cls in np.unique(data.labels):
        members = np.flatnonzero(data.labels == cls)
        ordered = [int(i) for i in members[_in_time(data, members)]]
        n_test = _held_out_count(held_out, len(ordered))
        n_gap = min(max(1, round(gap * len(ordered))) if gap > 0 else 0, len(ordered) - n_test - 1)
        test += ordered[len(ordered) - n_test :]
        between += ordered[len(ordered) - n_test - n_gap : len(ordered) - n_test]
        train += ordered[: len(ordered) - n_test - n_gap]
    source = "capture's file names" if data.named == len(data.paths) else "file times" if data.named == 0 else "capture's file names, else file times"
    how = f"in time: per class, the latest {held_out:.0%} held out"
    how += f", the {gap:.0%} before them used for neither" if gap > 0 else ""
    how += f" (times from {source})"
    return Split(_sorted(train), _sorted(test), _sorted(between), how)


def split_at_random(data: Loaded, held_out: float) -> Split:
    """Within each class, images ordered by a hash of their file name and the first `held_out`
    share kept out. Deterministic on any machine, stratified, and adding images to a class moves no
    other image between the halves. For photos of many places; frames of one camera belong in time."""
    train: list[int] = []
    test: list[int] = []
    for cls in np.unique(data.labels):
        members = [int(i) for i in np.flatnonzero(data.labels == cls)]
        members.sort(key=lambda i: hashlib.sha256(data.paths[i].name.encode("utf-8", "surrogateescape")).hexdigest())
        n_test = _held_out_count(held_out, len(members))
        test += members[:n_test]
        train += members[n_test:]
    how = f"at random: per class, images ordered by sha256 of the file name, the first {held_out:.0%} held out"
    return Split(_sorted(train), _sorted(test), _sorted([]), how, in_time=False)


def _held_out_count(held_out: float, n: int) -> int:
    # At least one held out, and at least one left to train on (--held-out is below 1 and
    # --min-images at least 2, but 0.99 of 10 rounds to all of them).
    return min(max(1, round(held_out * n)), n - 1)


def _sorted(indices: list[int]) -> np.ndarray:
    return np.asarray(sorted(indices), np.int64)


def with_held_out(data: Loaded, folder: Path, fraction: float) -> tuple[Loaded, Split]:
    """Train on all of `data`; hold out a second folder-per-class set with the same class names
    (frames from another day, or classes never seen in training)."""
    other = load(folder, Limits(min_per_class=1, allow_imbalance=True), fraction)
    if other.classes != data.classes:
        raise DatasetError(f"{folder}: classes {list(other.classes)} differ from the training folder's {list(data.classes)}")
    merged = Loaded(
        data.classes,
        np.concatenate([data.frames, other.frames]),
        np.concatenate([data.labels, other.labels]),
        data.paths + other.paths,
        data.skipped + other.skipped,
        np.concatenate([data.times, other.times]),
        data.named + other.named,
    )
    n = len(data.labels)
    how = f"all for training; held out: {folder}"
    return merged, Split(np.arange(n), np.arange(n, n + len(other.labels)), np.arange(0), how)
