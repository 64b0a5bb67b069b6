"""Each case as a user would have it: the region as the daemon crops it, every frame labelled from the
masks, training frames written the way `mnv1-edge capture` names them, later frames kept for measuring."""

from __future__ import annotations

import calendar
import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from benchmarks.footage.sources import Case, FootageError, Scene, local_path

# The labelling rule. The benchmarks mark each mask pixel moving (255), unknown (170: the blurred
# edge of a moving object), outside their region of interest (85), shadow (50) or static (0). A frame
# is "present" when at least PRESENT_MIN of the region's pixels move, "absent" when none moves and
# none is unknown; anything between (a sliver at the region's edge, only an object's blurred edge) or
# any pixel outside the benchmark's region of interest leaves the frame out: neither answer is sure.
MOVING, UNKNOWN, OUTSIDE = 255, 170, 85
PRESENT_MIN = 0.01
CLASSES = ("absent", "present")  # "absent" is one of train's empty-scene names: scene-2x and change apply
PER_CLASS = 100  # training frames per class at most, evenly spaced in time
T0 = calendar.timegm((2024, 1, 1, 0, 0, 0))  # frame 0's nominal capture time, UTC
RULE_VERSION = 1  # bump when the rule or the layout below changes: cached cases are then rebuilt
# A light that changed after training, made from a scene's own later frames: the camera's encoding
# undone (pixel = 255 * light ** (1 / GAMMA)), the light scaled, a small sensor's noise added
# (variance READ_NOISE^2 + SHOT_NOISE * light, linear full-scale units), encoded again. No
# auto-exposure: a lamp switched off on a fixed exposure, dusk without the sensor's gain.
GAMMA, READ_NOISE, SHOT_NOISE = 2.2, 0.002, 0.0004


@dataclass(frozen=True)
class Prepared:
    """What `prepare` made for one case; also written to <case>/case.json."""

    case: str
    roi: tuple[float, float, float, float]
    labels: dict[str, int]  # frames per label, "excluded" included, over the scene's evaluated frames
    train: dict[str, int]  # frames per class in the training folder
    later: dict[str, int]  # frames per class measured
    train_frames: tuple[int, int]  # first and last frame number trained on
    later_frames: tuple[int, int]  # first and last frame number measured

    @staticmethod
    def from_json(d: dict[str, Any]) -> Prepared:
        return Prepared(
            d["case"], tuple(d["roi"]), d["labels"], d["train"], d["later"], tuple(d["train_frames"]), tuple(d["later_frames"])
        )  # fmt: skip


def label(mask: np.ndarray, region: tuple[int, int, int]) -> str | None:
    """'present', 'absent' or None (left out) for one frame's mask, by the rule above."""
    x, y, side = region
    cut = mask[y : y + side, x : x + side]
    if np.any(cut == OUTSIDE):
        return None
    moving = int(np.count_nonzero(cut == MOVING))
    if moving >= PRESENT_MIN * cut.size:
        return "present"
    if moving == 0 and not np.any(cut == UNKNOWN):
        return "absent"
    return None


def capture_time(scene: Scene, n: int) -> float:
    return T0 + n / scene.fps


def capture_name(ts: float) -> str:
    """The file name `mnv1-edge capture` gives a frame taken at `ts` (UTC; sorts by time)."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime(ts)) + f".{int(ts % 1 * 1e6):06d}.jpg"


def evenly(numbers: list[int], k: int) -> list[int]:
    """At most `k` of `numbers`, evenly spaced, first and last included."""
    if len(numbers) <= k:
        return numbers
    return [numbers[i] for i in np.unique(np.linspace(0, len(numbers) - 1, k).round().astype(int))]


def folder(work: Path, case: Case) -> Path:
    return work / "prepared" / case.name


def prepare(work: Path, case: Case) -> Prepared:
    """Write <work>/prepared/<case>/: train/<class>/<capture-named>.jpg + capture.json, later.npz, case.json.
    Rebuilt only when the case, the scene or the rule changed."""
    out = folder(work, case)
    key = _key(case)
    done = out / "case.json"
    if done.is_file():
        saved = json.loads(done.read_text(encoding="utf-8"))
        if saved.get("key") == key:
            return Prepared.from_json(saved["prepared"])
    scene = case.scene
    labels = {n: label(_mask(work, scene, n), scene.region) for n in scene.numbers()}
    start = case.train_from if case.train_from is not None else scene.first
    train = {c: evenly([n for n, lab in labels.items() if lab == c and start <= n < case.train_before], PER_CLASS) for c in CLASSES}
    later = [n for n, lab in labels.items() if lab is not None and n >= case.test_from]
    for c in CLASSES:
        if not train[c] or not any(labels[n] == c for n in later):
            raise FootageError(f"{scene.name}: region {scene.region} gives no '{c}' frame to train on or to measure; draw another region")
    if out.exists():
        shutil.rmtree(out)
    roi = scene.roi()
    for c in CLASSES:
        (out / "train" / c).mkdir(parents=True)
        for n in train[c]:
            _save(_frame(work, scene, n, roi), capture_time(scene, n), out / "train" / c)
    _write_capture_info(out / "train", case, roi)
    frames = np.stack([_frame(work, scene, n, roi) for n in later])
    if case.later_light != 1.0:
        frames = dim(frames, case.later_light)
    classes = np.array([CLASSES.index(str(labels[n])) for n in later], np.int64)
    np.savez_compressed(out / "later.npz", frames=frames, labels=classes, numbers=np.array(later, np.int64))
    counted = [lab or "excluded" for lab in labels.values()]
    trained = sorted(n for c in CLASSES for n in train[c])
    prepared = Prepared(
        case.name, roi, {k: counted.count(k) for k in (*CLASSES, "excluded")}, {c: len(train[c]) for c in CLASSES},
        {c: int(np.sum(classes == i)) for i, c in enumerate(CLASSES)}, (trained[0], trained[-1]), (later[0], later[-1]),
    )  # fmt: skip
    done.write_text(json.dumps({"key": key, "prepared": asdict(prepared)}, indent=1) + "\n", encoding="utf-8")
    return prepared


def later_frames(work: Path, case: Case) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N x 128 x 128 x 3 uint8 frames, class indices into CLASSES, frame numbers) of the measured frames."""
    with np.load(folder(work, case) / "later.npz") as data:
        return data["frames"], data["labels"], data["numbers"]


def _key(case: Case) -> str:
    scene = case.scene
    what: list[Any] = [RULE_VERSION, PRESENT_MIN, PER_CLASS, T0, case.train_from, case.train_before, case.test_from]
    what += [case.later_light, GAMMA, READ_NOISE, SHOT_NOISE] if case.later_light != 1.0 else []
    what += [scene.input, scene.groundtruth, scene.first, scene.last, list(scene.region), scene.fps, scene.source.commit]
    return hashlib.sha256(json.dumps(what).encode()).hexdigest()


def dim(frames: np.ndarray, light: float, seed: int = 0) -> np.ndarray:
    """The uint8 frames as the camera would have taken them in `light` times the light (GAMMA, noise above)."""
    linear = (frames.astype(np.float64) / 255.0) ** GAMMA * light
    noise = np.random.default_rng(seed).standard_normal(frames.shape) * np.sqrt(READ_NOISE**2 + SHOT_NOISE * linear)
    out: np.ndarray = np.rint(255.0 * np.clip(linear + noise, 0.0, 1.0) ** (1.0 / GAMMA)).astype(np.uint8)
    return out


def _mask(work: Path, scene: Scene, n: int) -> np.ndarray:
    path = local_path(work, scene.source, scene.groundtruth.format(n=n))
    with Image.open(path) as image:
        if image.size != scene.size:
            raise FootageError(f"{path}: {image.size[0]}x{image.size[1]}, not the scene's {scene.size[0]}x{scene.size[1]}")
        mask = np.asarray(image if image.mode == "L" else image.convert("L"))  # grey masks; RGB or palette ones to their grey
    return mask


def _frame(work: Path, scene: Scene, n: int, roi: tuple[float, float, float, float]) -> np.ndarray:
    """The region as the daemon's images source makes it: the project's own crop and bilinear resize
    (load_image with source.roi; no centre crop: a model trained on captured frames records 1.0)."""
    from edge.model.preprocess import load_image
    from edge.model.region import Crop

    path = local_path(work, scene.source, scene.input.format(n=n))
    return load_image(path, Crop(roi=roi, fraction=1.0))


def _save(pixels: np.ndarray, ts: float, out: Path) -> None:
    """As `capture` saves a frame: JPEG at its quality, named by capture time; the file time set to it too."""
    from edge.commands.capture import JPEG_QUALITY

    path = out / capture_name(ts)
    Image.fromarray(pixels).save(path, format="JPEG", quality=JPEG_QUALITY)
    os.utime(path, (ts, ts))


def _write_capture_info(train: Path, case: Case, roi: tuple[float, float, float, float]) -> None:
    """capture.json as `capture` writes it (train copies it into the model's provenance), plus where the frames came from."""
    scene = case.scene
    info = {
        "config": "benchmarks/footage (no device)",
        "source": "images",
        "crop_fraction": 1.0,
        "roi": list(roi),
        "frame": "128x128 RGB: the source's frames after its crop, exactly what the model is fed",
        "footage": f"{scene.source.repo}@{scene.source.commit}: {scene.input} (case {case.name})",
    }
    (train / "capture.json").write_text(json.dumps(info, indent=1, sort_keys=True) + "\n", encoding="utf-8")
