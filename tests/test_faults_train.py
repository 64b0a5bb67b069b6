"""train, capture and the command-line options: bad input refused before anything heavy starts, one line each."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from tests.support.faults import cli


def class_folders(root: Path, classes: tuple[str, ...] = ("cat", "none"), per_class: int = 12) -> Path:
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.new("RGB", (160, 160), (20 * i % 255, 90, 30 if name == "cat" else 200)).save(root / name / f"{i:02d}.png")
    return root


def train(tmp_path: Path, *args: str) -> tuple[int, str]:
    run = cli("train", "--out", str(tmp_path / "m.tflite"), *args, timeout=120)
    return run.returncode, run.stderr


def test_a_class_folder_that_is_a_symlink_loop_is_named(tmp_path: Path) -> None:
    """A looping link among the class folders was an ELOOP traceback."""
    root = class_folders(tmp_path / "images")
    (root / "dog").symlink_to("dog")
    status, stderr = train(tmp_path, "--images", str(root))
    assert status == 65 and f"{root / 'dog'}: cannot read this entry of the images folder (Too many levels of symbolic links)" in stderr, stderr
    assert "Traceback" not in stderr


def test_images_in_sub_folders_of_a_class_are_pointed_at(tmp_path: Path) -> None:
    """cat/2024/*.jpg got "no image files" with no hint that sub-folders are not searched."""
    root = class_folders(tmp_path / "images")
    (root / "dog" / "2024").mkdir(parents=True)
    Image.new("RGB", (160, 160)).save(root / "dog" / "2024" / "a.png")
    status, stderr = train(tmp_path, "--images", str(root))
    assert status == 65 and f"{root / 'dog'}: class 'dog' has no image files" in stderr, stderr
    assert f"sub-folders are not searched: move the images in 2024/ up into {root / 'dog'}/" in stderr
