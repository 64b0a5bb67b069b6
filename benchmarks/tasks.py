"""Training tasks built from real photos: fixed-camera scenes with a small subject present or absent, and harder ones."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

FRAME = (192, 144)  # a modest 4:3 capture, like `mnv1-edge capture` of a cropped camera view

# ImageNet class ranges in the 1001-class indexing (class 0 = background), 1000-class index + 1.
DOGS = range(152, 270)
BIRDS = (*range(8, 26), *range(81, 102), *range(128, 148))
ANIMALS = range(1, 399)


def dev_rows(dev: Path) -> list[tuple[Path, int]]:
    with open(dev / "labels.csv", newline="", encoding="utf-8") as f:
        return sorted((dev / r["file"], int(r["class_index"])) for r in csv.DictReader(f))


def _subject(sample: Path) -> tuple[Image.Image, Image.Image]:
    """The sample photo's central subject and a soft elliptical mask (no cut-out masks exist)."""
    with Image.open(sample) as img:
        rgb = img.convert("RGB")
    w, h = rgb.size
    side = int(min(w, h) * 0.7)
    rgb = rgb.crop(((w - side) // 2, (h - side) // 2, (w + side) // 2, (h + side) // 2))
    mask = Image.new("L", rgb.size, 0)
    ImageDraw.Draw(mask).ellipse((side * 0.05, side * 0.05, side * 0.95, side * 0.95), fill=255)
    return rgb, mask.filter(ImageFilter.GaussianBlur(side * 0.03))


def _jitter(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Daylight brightness and sensor noise, as successive frames of one camera differ."""
    x = np.asarray(img, np.float32) * rng.uniform(0.7, 1.3)
    x += rng.normal(0.0, rng.uniform(1.0, 6.0), x.shape)
    return Image.fromarray(np.clip(np.rint(x), 0, 255).astype(np.uint8))


def presence_task(out: Path, dev: Path, sample: Path, count: int, seed: int, scenes: int = 3, other: Path | None = None) -> Path:
    """out/present and out/absent, `count` frames in all: a few fixed scenes, the subject pasted at
    5-20 % of the width at random places in half of them; with `other`, that photo's subject pasted
    the same way in a third of all frames, present or absent (a cat at the bird feeder)."""
    rng = np.random.default_rng(seed)
    other_rng = np.random.default_rng(seed + 1000)  # its own draws: the frames without it stay as they were
    rows = dev_rows(dev)
    backgrounds = []
    for path, _ in rows[17 :: len(rows) // scenes][:scenes]:
        with Image.open(path) as img:
            backgrounds.append(img.convert("RGB").resize(FRAME, Image.Resampling.BILINEAR))
    subject, mask = _subject(sample)
    others = _subject(other) if other is not None else None
    for name in ("present", "absent"):
        (out / name).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        frame = backgrounds[i % scenes].copy()
        present, width = i % 2 == 0, 0
        if others is not None and other_rng.uniform() < 1 / 3:
            w = int(FRAME[0] * other_rng.uniform(0.05, 0.20))
            x, y = int(other_rng.integers(0, FRAME[0] - w)), int(other_rng.integers(0, FRAME[1] - w))
            frame.paste(others[0].resize((w, w)), (x, y), others[1].resize((w, w)))
        if present:
            width = int(FRAME[0] * rng.uniform(0.05, 0.20))
            sub, m = subject.resize((width, width)), mask.resize((width, width))
            x, y = int(rng.integers(0, FRAME[0] - width)), int(rng.integers(0, FRAME[1] - width))
            frame.paste(sub, (x, y), m)
        _jitter(frame, rng).save(out / ("present" if present else "absent") / f"{seed}_{i:04d}_w{width:03d}.jpg", quality=90)
    return out


def _frame(path: Path) -> Image.Image:
    with Image.open(path) as img:
        rgb = img.convert("RGB")
    w, h = rgb.size
    side = min(w, h)
    return rgb.crop(((w - side) // 2, (h - side) // 2, (w + side) // 2, (h + side) // 2)).resize((160, 160), Image.Resampling.BILINEAR)


def orientation_task(out: Path, dev: Path, first: int, count: int, seed: int) -> Path:
    """out/upright and out/upside_down from `count` dev images starting at `first` (each image once)."""
    rng = np.random.default_rng(seed)
    for name in ("upright", "upside_down"):
        (out / name).mkdir(parents=True, exist_ok=True)
    for path, _ in dev_rows(dev)[first : first + count]:
        flip = bool(rng.integers(0, 2))
        img = _frame(path)
        (img.rotate(180) if flip else img).save(out / ("upside_down" if flip else "upright") / f"{path.stem}.jpg", quality=92)
    return out


def group_of(index: int, groups: dict[str, tuple[int, ...] | range]) -> str:
    return next((name for name, members in groups.items() if index in members), "other")


def group_task(out: Path, dev: Path, groups: dict[str, tuple[int, ...] | range], parity: int, cap: dict[str, int]) -> Path:
    """out/<group> from every other dev image (`parity` 0 or 1 of the rows in synset order). The dev
    set holds one image per class, so the other half's classes are never seen: holding them out
    measures generalisation to unseen classes. `cap` limits a group's image count ("other" dwarfs the rest)."""
    taken: dict[str, int] = {}
    for row, (path, index) in enumerate(dev_rows(dev)):
        if row % 2 != parity:
            continue
        group = group_of(index, groups)
        if taken.get(group, 0) >= cap.get(group, 10**9):
            continue
        taken[group] = taken.get(group, 0) + 1
        (out / group).mkdir(parents=True, exist_ok=True)
        _frame(path).save(out / group / f"{path.stem}.jpg", quality=92)
    return out
