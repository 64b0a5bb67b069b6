"""Accuracy and latency for any models: labelled folders, float and uint8 inputs, ties, the eval command."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge import paths
from edge.convert.dataset import read_labelled
from edge.convert.evaluate import Runner, accuracy
from edge.errors import SourceError
from edge.model.preprocess import load_image


def labelled_folder(tmp_path: Path, count: int) -> Path:
    rows = (paths.dev_images() / "labels.csv").read_text().splitlines()
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "labels.csv").write_text("\n".join(rows[: count + 1]) + "\n")
    for row in rows[1 : count + 1]:
        shutil.copy(paths.dev_images() / row.split(",")[0], folder)
    return folder


def test_labels_csv_is_required_and_checked(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"labels\.csv: missing"):
        read_labelled(tmp_path)
    (tmp_path / "labels.csv").write_text("name,label\na.jpg,1\n")
    with pytest.raises(SourceError, match="expected columns file,synset,class_index,class_name"):
        read_labelled(tmp_path)


def test_float_and_uint8_models_see_the_same_image(shared: Path) -> None:
    frame = load_image(paths.sample_images() / "parrot.jpg")
    flt, ref = Runner("float", paths.float_model()), Runner("ref", paths.reference_quant_model())
    flt.set_input(frame)
    ref.set_input(frame)
    fed_float, fed_uint8 = flt.raw.get_tensor(flt.input_index), ref.raw.get_tensor(ref.input_index)
    assert fed_float.dtype == np.float32 and -1.0 <= float(fed_float.min()) < float(fed_float.max()) <= 1.0
    assert fed_uint8.dtype == np.uint8 and np.array_equal(fed_uint8[0], frame)
    p_float, p_ref = flt.classify(frame), ref.classify(frame)
    assert int(np.argmax(p_float)) == int(np.argmax(p_ref)) == 89  # macaw
    assert abs(float(p_ref.sum()) - 1.0) < 0.05 and abs(float(p_float.sum()) - 1.0) < 1e-3


def test_accuracy_counts_ties_and_breaks_them_to_the_lower_index() -> None:
    probs = np.zeros((2, 1001), np.float32)
    probs[0, [5, 3]] = 0.5  # tie: class 3 wins
    probs[1, 7] = 0.9
    baseline = np.zeros_like(probs)
    baseline[0, 3] = baseline[1, 8] = 1.0
    a = accuracy("m", probs, np.array([3, 8]), baseline)
    assert (a.top1, a.top5, a.agreement, a.top1_ties) == (50.0, 50.0, 50.0, 50.0)


# `eval` runs on a device without TensorFlow: the command runs with TF and Keras made unimportable.
NO_TENSORFLOW = "import sys; sys.modules['tensorflow'] = sys.modules['keras'] = None; from edge.cli import main; sys.exit(main())"


def test_eval_command_reports_accuracy_and_latency_without_tensorflow(tmp_path: Path) -> None:
    folder = labelled_folder(tmp_path, 6)
    out = tmp_path / "eval.json"
    cmd = [sys.executable, "-c", NO_TENSORFLOW, "eval", "--images", str(folder), "--rounds", "5", "--json", str(out)]
    cmd += [str(paths.float_model()), str(paths.reference_quant_model())]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)
    data = json.loads(out.read_text())
    assert data["count"] == 6 and [a["name"] for a in data["accuracy"]] == cmd[-2:]
    assert data["accuracy"][0]["agreement"] is None and 0 <= data["accuracy"][1]["agreement"] <= 100
    assert [lat["name"] for lat in data["latency"]] == cmd[-2:] and data["latency"][0]["vs_first"] == 1.0
    assert "top-1" in result.stdout and "median" in result.stdout


def test_eval_refuses_a_missing_model(tmp_path: Path) -> None:
    folder = labelled_folder(tmp_path, 1)
    cmd = [sys.executable, "-m", "edge", "eval", "--images", str(folder), str(tmp_path / "none.tflite")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "none.tflite: model file not found" in result.stderr and "Traceback" not in result.stderr


def test_short_rows_and_unreadable_labels_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text("file,synset,class_index,class_name\na.jpg,n01,3,cat\nb.jpg,n02\n")
    with pytest.raises(SourceError, match=r"labels\.csv: malformed row at line 3"):
        read_labelled(tmp_path)
    as_dir = tmp_path / "dir"
    (as_dir / "labels.csv").mkdir(parents=True)
    with pytest.raises(SourceError, match=r"labels\.csv: cannot read \(Is a directory\)"):
        read_labelled(as_dir)


def test_eval_checks_the_json_path_before_evaluating(tmp_path: Path) -> None:
    """The JSON folder is missing and so is the image folder: the JSON error comes first, before any work."""
    out = tmp_path / "missing" / "eval.json"
    cmd = [sys.executable, "-m", "edge", "eval", "--images", str(tmp_path / "no-images"), "--json", str(out), str(paths.float_model())]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 73, result.stderr
    assert f"{out}: cannot write the evaluation JSON" in result.stderr and "Traceback" not in result.stderr
    assert not out.parent.exists()


@pytest.mark.parametrize(("option", "value"), [("--threads", "0"), ("--rounds", "-1")])
def test_eval_refuses_bad_counts(tmp_path: Path, option: str, value: str) -> None:
    cmd = [sys.executable, "-m", "edge", "eval", "--images", str(tmp_path), option, value, str(paths.float_model())]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and f"argument {option}: expected" in result.stderr and "Traceback" not in result.stderr
