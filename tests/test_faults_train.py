"""train, capture and the command-line options: bad input refused before anything heavy starts, one line each."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from edge.train import dataset
from tests.support.faults import cli, free_bytes, model, small_disk

__all__ = ["model", "small_disk"]  # fixtures


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


def every_option() -> list[tuple[str, str, Any]]:
    """(command, option, argparse type) of every option of every command that takes a typed value."""
    from edge.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [
        (name, action.option_strings[-1] if action.option_strings else action.dest, action.type)
        for name, command in sub.choices.items()
        for action in command._actions
        if action.type is not None
    ]


def test_no_option_of_any_command_takes_nan_or_inf() -> None:
    """train --min-accuracy nan and --max-imbalance nan were accepted: the gate could never fail."""
    options = every_option()
    assert len(options) > 20
    for command, option, kind in options:
        assert kind is not float, f"{command} {option}: type=float accepts nan and inf; use edge.commands.bounded_float"
        for text in ("nan", "inf", "-inf"):
            try:
                value = kind(text)
            except (argparse.ArgumentTypeError, ValueError, TypeError):
                continue
            assert not (isinstance(value, float) and not math.isfinite(value)), f"{command} {option} {text} gave {value}"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("train", "--images", "x", "--out", "m.tflite", "--min-accuracy", "nan"), "--min-accuracy: expected a number from 0 to 100, got 'nan'"),
        (
            ("train", "--images", "x", "--out", "m.tflite", "--max-imbalance", "nan"),
            "--max-imbalance: expected a number from 1 to 1000000, got 'nan'",
        ),
        (("train", "--images", "x", "--out", "m.tflite", "--held-out", "1"), "--held-out: expected a number in (0, 1), got '1'"),
        (("train", "--images", "x", "--out", "m.tflite", "--min-images", "1"), "--min-images: expected an integer >= 2"),
        (("train", "--images", "x", "--out", "m.tflite", "--gap", "0.5"), "--gap: expected a number in [0, 0.5), got '0.5'"),
        (("train", "--images", "x", "--out", "m.tflite", "--split", "hash"), "--split: invalid choice: 'hash' (choose from"),
        (("capture", "--out", "x", "--every", "inf"), "--every: expected a number from 0 to 86400, got 'inf'"),
        (("fleet", "--broker", "localhost", "--prefix", "#"), "--prefix: must not contain MQTT wildcards (# +) or control characters, got '#'"),
        (("fleet", "--broker", "localhost", "--prefix", "mnv1-edge/+"), "--prefix: must not contain MQTT wildcards"),
        (("classify", "--groups", "bird,feeder", "x.jpg"), "--groups: unknown group 'feeder' in 'bird,feeder'; the built-in groups are animal, bird"),
        (("eval", "--images", "x", "--groups", "nosuch", "m.tflite"), "--groups: unknown group 'nosuch' in 'nosuch'"),
        (("eval", "--images", "x", "--groups", ",", "m.tflite"), "--groups: expected built-in group names separated by commas"),
        (("info", "--model", "m.tflite", "--config", "c.toml"), "argument --config: not allowed with argument --model"),
    ],
)
@pytest.mark.slow
def test_options_that_misbehaved_are_usage_errors(args: tuple[str, ...], message: str) -> None:
    run = cli(*args)
    assert run.returncode == 2 and message in run.stderr, run.stderr
    assert "Traceback" not in run.stderr and "[groups]" not in run.stderr


def test_held_out_rounding_to_every_image_keeps_one_to_train_on() -> None:
    labels = np.asarray([0] * 10 + [1] * 10)
    paths = tuple(Path(f"{i}.png") for i in range(20))
    data = dataset.Loaded(("a", "b"), np.zeros((20, 1, 1, 3), np.uint8), labels, paths, (), np.arange(20.0))
    for split in (dataset.split_at_random(data, 0.99), dataset.split_in_time(data, 0.99, 0.05)):
        assert set(labels[split.train]) == {0, 1} and len(split.train) == 2 and len(split.held_out) == 18, split


def test_classify_goes_on_after_a_missing_image(tmp_path: Path, model: Path, shared: Path) -> None:
    """classify stopped at the first missing file; the images after it were never classified."""
    owl = shared / "data" / "samples" / "owl.jpg"
    run = cli("classify", "--model", str(model), "--json", str(tmp_path / "missing.jpg"), str(owl))
    assert run.returncode == 69, run.stderr
    assert f"mnv1-edge classify: error: {tmp_path / 'missing.jpg'}: no such image file" in run.stderr
    assert [json.loads(line)["image"] for line in run.stdout.splitlines()] == [str(owl)]


def test_built_in_groups_with_a_model_of_own_classes_are_one_line(tmp_path: Path, model: Path, shared: Path) -> None:
    """`groups --model` on a 2-class model was an IndexError traceback; `classify --groups` a config error (78)."""
    import shutil

    own = tmp_path / "own.tflite"
    shutil.copy(model, own)
    manifest = json.loads(Path(f"{model}.json").read_text())
    Path(f"{own}.json").write_text(json.dumps({**manifest, "labels": ["cat", "none"], "output_shape": [1, 2]}))
    groups = cli("groups", "--model", str(own))
    assert groups.returncode == 65 and f"{own}: has 2 classes of its own; the built-in groups name classes of the 1001-class" in groups.stderr
    assert "Traceback" not in groups.stderr
    # classify --groups with such a model (a stand-in engine: only its labels and path are read)
    from types import SimpleNamespace

    from edge.commands.classify import make_scorer
    from edge.errors import UsageError

    with pytest.raises(UsageError, match=r"--groups: the built-in groups name classes of the 1001-class ImageNet model; own.tflite has 2") as raised:
        make_scorer(("bird",), SimpleNamespace(labels=("cat", "none"), model_path=Path("own.tflite")))  # type: ignore[arg-type]
    assert raised.value.exit_code == 2


@pytest.mark.slow
def test_capture_on_a_full_disk_or_a_blocked_folder_names_the_folder(tmp_path: Path, small_disk: Path) -> None:
    """capture --out on a full disk was an OSError traceback (exit 1) writing capture.json; a file in
    the way of --out was "File exists"."""
    from tests.support.daemon import write_config

    config = write_config(tmp_path / "c.toml", {"state_dir": str(tmp_path / "state"), "source": {"kind": "synthetic"}})
    (small_disk / "filler").write_bytes(b"\0" * free_bytes(small_disk))
    full = cli("capture", "--config", str(config), "--out", str(small_disk / "frames"), "--count", "2", "--every", "0")
    assert full.returncode == 73 and f"{small_disk / 'frames'}: cannot write capture.json (No space left on device)" in full.stderr, full.stderr
    assert "Traceback" not in full.stderr
    blocker = tmp_path / "blocker"
    blocker.write_text("a file\n")
    blocked = cli("capture", "--config", str(config), "--out", str(blocker / "frames"), "--count", "1")
    assert blocked.returncode == 73 and f"cannot create the capture folder ({blocker} is a file, not a folder)" in blocked.stderr, blocked.stderr
