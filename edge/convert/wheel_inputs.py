"""Labels and calibration photos from files inside pinned PyPI wheels, for a checkout without ../shared."""

# A fresh clone has the official float model (downloaded by `convert`) but neither the labels nor
# any photos, and pip's index is the one place every machine of this project can reach. Two wheels
# carry what is needed, as plain files: timm ships the ImageNet synsets and their WordNet lemmas
# (joined under "background" they are, byte for byte, the 1001-line labels file the converter uses),
# and scikit-image ships a few natural photos inside its wheel (the rest of its data set is fetched
# at run time by pooch, which needs the internet, so only these are used). Each file is checked
# against a sha256 pin here, so a changed wheel is refused rather than silently used. Calibrating
# on the six colour photos gave 76 % top-1 agreement with the float model on ImageNet held-out
# images; on 36 random crops of them 82 % (docs/demo.md has the table), hence the crops.

from __future__ import annotations

import argparse
import hashlib
import io
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from edge.errors import SourceError


@dataclass(frozen=True)
class Wheel:
    requirement: str
    pip_args: tuple[str, ...]  # platform pins: the data files are the same in every build of the wheel


TIMM = Wheel("timm==1.0.31", ())
SKIMAGE = Wheel(
    "scikit-image==0.26.0",
    ("--platform", "manylinux_2_28_x86_64", "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311"),
)
SYNSETS = "timm/data/_info/imagenet_synsets.txt"
LEMMAS = "timm/data/_info/imagenet_synset_to_lemma.txt"
LABELS_SHA256 = "b8aaeb5630c62626a7d124a05c0e14230a7ffdd2136a31d0190a4fb71c1d82f1"  # = ../shared/models/imagenet_labels.txt
# The colour photographs bundled in the scikit-image wheel (the grey, texture, microscopy and sky
# images made calibration worse: 74 % agreement with all 15 bundled photos).
PHOTOS = {
    "astronaut.png": "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
    "chelsea.png": "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
    "coffee.png": "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
    "motorcycle_left.png": "db18e9c4157617403c3537a6ba355dfeafe9a7eabb6b9b94cb33f6525dd49179",
    "motorcycle_right.png": "5fc913ae870e42a4b662314bc904d1786bcad8e2f0b9b67dba5a229406357797",
    "rocket.jpg": "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c",
}
CROPS_PER_PHOTO = 6


def download(wheel: Wheel, dest: Path) -> Path:
    """The wheel file, from `dest` when already there, else with `pip download` (no dependencies)."""
    name = wheel.requirement.split("==")[0].replace("-", "_")
    found = sorted(dest.glob(f"{name}-{wheel.requirement.split('==')[1]}-*.whl"))
    if found:
        return found[0]
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:", *wheel.pip_args, "-d", str(dest), wheel.requirement]
    run = subprocess.run(cmd, capture_output=True, text=True, check=False)
    found = sorted(dest.glob(f"{name}-*.whl"))
    if run.returncode != 0 or not found:
        last = (run.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
        raise SourceError(f"pip download {wheel.requirement}: failed ({last}); pass your own photos and labels instead")
    return found[0]


def member(wheel: Path, name: str, sha256: str | None = None) -> bytes:
    """One file of the wheel, checked against its pin."""
    try:
        with zipfile.ZipFile(wheel) as z:
            data = z.read(name)
    except KeyError as exc:
        raise SourceError(f"{wheel}: has no {name}; not the pinned wheel") from exc
    except (zipfile.BadZipFile, OSError) as exc:
        raise SourceError(f"{wheel}: not a readable wheel ({exc}); delete it to download it again") from exc
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise SourceError(f"{wheel}: {name} does not match its pinned sha256; refusing it")
    return data


def labels(wheel: Path, sha256: str = LABELS_SHA256) -> str:
    """The 1001 labels (class 0 = background) from timm's synset list and synset-to-lemma table."""
    synsets = member(wheel, SYNSETS).decode().split()
    lemmas = dict(line.split("\t", 1) for line in member(wheel, LEMMAS).decode().splitlines() if "\t" in line)
    missing = [s for s in synsets if s not in lemmas]
    if missing:
        raise SourceError(f"{wheel}: no lemma for synset {missing[0]}; not the pinned wheel")
    text = "background\n" + "".join(lemmas[s] + "\n" for s in synsets)
    if hashlib.sha256(text.encode()).hexdigest() != sha256:
        raise SourceError(f"{wheel}: the labels built from it do not match their pinned sha256; refusing them")
    return text


def photos(wheel: Path, pins: dict[str, str] = PHOTOS) -> dict[str, bytes]:
    return {name: member(wheel, f"skimage/data/{name}", sha) for name, sha in pins.items()}


def crops(name: str, data: bytes, count: int, seed: int) -> dict[str, bytes]:
    """`count` random crops (40-100 % of each side, every other one mirrored) as PNG: objects at
    the scales ImageNet photos show them, which is what calibration ranges need."""
    import numpy as np
    from PIL import Image, ImageOps

    rng = np.random.default_rng(seed)
    out: dict[str, bytes] = {}
    with Image.open(io.BytesIO(data)) as im:
        rgb = im.convert("RGB")
    w, h = rgb.size
    for k in range(count):
        s = rng.uniform(0.4, 1.0)
        cw, ch = int(w * s), int(h * s)
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        crop = rgb.crop((x, y, x + cw, y + ch))
        buf = io.BytesIO()
        (ImageOps.mirror(crop) if k % 2 else crop).save(buf, "PNG")
        out[f"{Path(name).stem}_{k}.png"] = buf.getvalue()
    return out


def prepare(out: Path, with_photos: bool = True) -> None:
    """OUT/imagenet_labels.txt, and OUT/photos (the originals) + OUT/calibration (their crops)."""
    from edge.fsutil import write_atomic

    wheels = out / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "imagenet_labels.txt", labels(download(TIMM, wheels)).encode())
    if not with_photos:
        return
    for folder in ("photos", "calibration"):
        (out / folder).mkdir(exist_ok=True)
    for i, (name, data) in enumerate(photos(download(SKIMAGE, wheels)).items()):
        write_atomic(out / "photos" / name, data)
        for crop_name, crop in crops(name, data, CROPS_PER_PHOTO, seed=i).items():
            write_atomic(out / "calibration" / crop_name, crop)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edge.convert.wheel_inputs", description=__doc__)
    p.add_argument("out", type=Path, help="folder for imagenet_labels.txt, photos/ and calibration/")
    p.add_argument("--labels-only", action="store_true", help="only the labels (you have photos of your own)")
    args = p.parse_args(argv)
    try:
        prepare(args.out, with_photos=not args.labels_only)
    except SourceError as exc:
        print(f"{p.prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    what = "labels" if args.labels_only else f"labels, {len(PHOTOS)} photos and {len(PHOTOS) * CROPS_PER_PHOTO} calibration crops"
    print(f"{args.out}: {what} from pinned PyPI wheels")
    return 0


if __name__ == "__main__":
    sys.exit(main())
