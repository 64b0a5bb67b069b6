"""The folder-per-class image set: checks with one clear line each, loading, a stratified held-out split."""

from __future__ import annotations

import hashlib
import os
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
    return Loaded(names, np.stack(frames), np.asarray(labels, np.int64), tuple(kept), tuple(skipped))


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


def split(paths: tuple[Path, ...], labels: np.ndarray, held_out: float) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, held-out indices): within each class, images ordered by a hash of their file
    name and the first `held_out` fraction kept out. Deterministic on any machine, stratified, and
    adding images to a class moves no other image between the halves."""
    train: list[int] = []
    test: list[int] = []
    for cls in np.unique(labels):
        members = [int(i) for i in np.flatnonzero(labels == cls)]
        members.sort(key=lambda i: hashlib.sha256(paths[i].name.encode("utf-8", "surrogateescape")).hexdigest())
        # At least one held out, and at least one left to train on (--held-out is below 1 and
        # --min-images at least 2, but 0.99 of 10 rounds to all of them).
        n_test = min(max(1, round(held_out * len(members))), len(members) - 1)
        test += members[:n_test]
        train += members[n_test:]
    return np.asarray(sorted(train), np.int64), np.asarray(sorted(test), np.int64)


def with_held_out(data: Loaded, folder: Path, fraction: float) -> tuple[Loaded, np.ndarray, np.ndarray]:
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
    )
    n = len(data.labels)
    return merged, np.arange(n), np.arange(n, n + len(other.labels))
