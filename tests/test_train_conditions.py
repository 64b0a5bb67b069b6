"""What `train` says of the frames beyond accuracy: the light they cover, the heads a light change would fool, the held-out frames it got wrong."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge.train import conditions, head, heads
from tests.test_train_positions import Costly


def grey(levels: list[int]) -> np.ndarray:
    return np.stack([np.full((8, 8, 3), v, np.uint8) for v in levels])


def test_coverage_calls_one_light_narrow_and_day_and_night_wide() -> None:
    one_light = grey(list(range(100, 140)))
    labels, idx = np.arange(40) % 2, np.arange(40)
    cover = conditions.coverage(one_light, labels, ("absent", "present"), idx[:30], idx[30:])
    assert cover["narrow"] and cover["brightness_train"][0] >= 100 and cover["brightness_train"][1] < 140
    assert set(cover["brightness"]) == {"absent", "present"} and len(cover["brightness"]["absent"]["held_out"]) == 3
    assert "light: every training frame" in conditions.narrow_note(cover)
    day_and_night = grey(list(range(10, 210, 5)))
    assert not conditions.coverage(day_and_night, labels, ("absent", "present"), idx[:30], idx[30:])["narrow"]


def test_visits_are_the_stretches_of_time_another_class_ends() -> None:
    """One person's walk in (a single run of 'present') is one visit however many frames it has;
    the order is the capture time's, not the file names'."""
    from edge.train import dataset

    sequence = "aaappppppaaaapp"  # in time
    order = np.random.default_rng(0).permutation(len(sequence))  # the files in another order
    labels = np.array([0 if sequence[k] == "a" else 1 for k in order])
    data = dataset.Loaded(
        ("absent", "present"), grey([0] * len(order)), labels, tuple(Path(f"{k:02d}.jpg") for k in range(len(order))), (), order * 0.5
    )
    assert dataset.visits(data, np.arange(len(order))) == {"absent": 2, "present": 2}
    assert dataset.visits(data, np.flatnonzero(order < 9)) == {"absent": 1, "present": 1}
    assert conditions.few_visits({"absent": 3, "present": 2}) and not conditions.few_visits({"absent": 3, "present": 3})
    assert "'present' 2" in conditions.visits_note({"absent": 3, "present": 2})


def test_dimmed_frames_are_darker_and_the_same_every_time() -> None:
    frames = grey([60, 120, 200, 255])
    dim = conditions.dimmed(frames)
    assert np.array_equal(dim, conditions.dimmed(frames))
    level = conditions.brightness(dim)
    assert np.all(level < conditions.brightness(frames) * 0.5) and np.all(np.diff(level) > 0)


def test_the_int8_probe_names_each_class_the_dimmed_frames_leave() -> None:
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.1, 0.9]])
    kept = conditions.kept(probs, np.array([0, 0, 1, 1]), ("absent", "present"))
    assert kept == {"absent": 50.0, "present": 100.0}
    note = conditions.dimmed_note(kept, 90.0)
    assert note is not None and "'absent' 50 %" in note and "present" not in note.split("in their class")[0]
    assert conditions.dimmed_note({"absent": 95.0, "present": 100.0}, 90.0) is None


def test_auto_leaves_out_a_head_that_turns_dimmed_frames_into_another_class() -> None:
    """A costlier head cross-validates better, but on the probe's frames its cells all light up (a
    light change that reads as the subject): with the probe, auto takes positions and says why."""
    rng = np.random.default_rng(3)
    n, d = 80, 8
    labels = np.arange(n) % 2
    weak = rng.uniform(0, 1, (n, 64, d))
    weak[labels == 1, rng.integers(0, 64, n // 2), 3] += rng.uniform(0.0, 1.5, n // 2)
    strong = rng.uniform(0, 1, (n, 256, d))
    strong[labels == 1, rng.integers(0, 256, n // 2), 3] += 2.0
    fooled = rng.uniform(0, 1, (n, 256, d))
    fooled[np.arange(n), rng.integers(0, 256, n), 3] += 2.0  # every dimmed frame looks like a subject
    holds = rng.uniform(0, 1, (n, 64, d))
    holds[labels == 1, rng.integers(0, 64, n // 2), 3] += 3.0  # the subject still stands out
    candidates = (heads.get("positions"), Costly())
    inputs, fold = {"positions": weak, "costly": strong}, np.arange(n) % 4
    assert head.choose(inputs, labels, fold, 2, candidates).head.name == "costly"
    probe = head.Probe({"positions": holds, "costly": fooled}, labels, fold)
    choice = head.choose(inputs, labels, fold, 2, candidates, probe=probe)
    assert choice.head.name == "positions" and choice.excluded == ("costly",)
    assert choice.probe_of("costly") < head.PROBE_MIN <= choice.probe_of("positions")


def capture_named(frames: list[np.ndarray], folder: Path, times: list[float]) -> list[Path]:
    """Frames saved as `mnv1-edge capture` saves them: named by their UTC capture time."""
    from edge.commands.capture import _save

    folder.mkdir(parents=True, exist_ok=True)
    for frame, t in zip(frames, times, strict=True):
        _save(frame, t, folder)
    return sorted(folder.iterdir())


@pytest.mark.slow
def test_change_head_on_a_low_contrast_crop_with_mislabelled_late_frames(shared: Path, tmp_path: Path) -> None:
    """A crop whose pixels never reach black or white (a grey corridor) used to make the change head
    exit 65 ("the normalised input's scale 0.0078125 is not 1/127.5"); now the model takes the
    camera's bytes as every model does. The frames carry capture-style names whose times, not the
    file order, decide the split; the last three 'absent' frames are really 'present' (a labelling
    slip), so the report lists them as mistakes and its PNG pictures them."""
    from benchmarks.tasks import presence_task
    from edge import paths
    from edge.convert import flatbuf
    from edge.convert.quantize import INPUT_SCALE
    from edge.model.manifest import manifest_path
    from tests.test_train import train

    raw = presence_task(tmp_path / "raw", paths.dev_images(), paths.sample_images() / "parrot.jpg", 60, seed=3)

    def low_contrast(path: Path) -> np.ndarray:
        with Image.open(path) as img:
            pixels = np.asarray(img.convert("RGB").resize((128, 128), Image.Resampling.BILINEAR), np.float64)
        return np.rint(40 + pixels * 0.6).astype(np.uint8)  # 40-193: never black, never white

    rng = np.random.default_rng(0)
    images, start = tmp_path / "frames", 1_796_000_000.0
    by_class = {name: [low_contrast(p) for p in sorted((raw / name).iterdir())] for name in ("absent", "present")}
    for name, frames in by_class.items():  # capture times in another order than the task wrote the frames
        capture_named(frames, images / name, [start + 2.0 * float(k) for k in rng.permutation(len(frames))])
    slips = capture_named(by_class["present"][:3], images / "absent" / "late", [start + 1000.0 + k for k in range(3)])
    for slip in slips:
        slip.rename(images / "absent" / slip.name)
    (images / "absent" / "late").rmdir()
    slips = [images / "absent" / s.name for s in slips]

    out, report_path = tmp_path / "change.tflite", tmp_path / "change.report.json"
    proc = train(images, out, "--head", "change", "--min-accuracy", "50", "--min-agreement", "50", "--report", str(report_path))
    assert proc.returncode == 0, proc.stderr
    model = flatbuf.read(out.read_bytes(), str(out))
    q = model.subgraphs[0].tensors[int(model.subgraphs[0].inputs[0])].quantization
    assert abs(float(q.scale[0]) - INPUT_SCALE) < 1e-9 and int(q.zeroPoint[0]) == 128

    r = json.loads(report_path.read_text())
    assert r["images"]["split"].startswith("in time") and "capture's file names" in r["images"]["split"]
    assert "split     in time" in proc.stdout and "light     training frames' brightness" in proc.stdout
    for name, span in r["images"]["times"].items():  # every held-out frame later than every training frame
        assert span["train"][1] < span["held_out"][0], name
    assert r["conditions"]["narrow"] and any(n.startswith("light: every training frame") for n in r["notes"])
    kept = r["conditions"]["dimmed_int8_kept"]  # the deployed model on the training frames at an eighth of the light
    assert set(kept) == {"absent", "present"} and kept["absent"] >= 90.0, kept
    low, high = r["conditions"]["brightness_train"]
    assert 40 <= low < high <= 193

    wrong = {m["path"]: m for m in r["mistakes"]}
    assert {str(s) for s in slips} <= set(wrong), r["mistakes"]
    assert all(wrong[str(s)]["true"] == "absent" and wrong[str(s)]["predicted"] == "present" for s in slips)
    assert all(0.5 <= wrong[str(s)]["score"] <= 1.0 for s in slips)
    # The PNG: confusion matrices on top, then a row of thumbnails per true class with a mistake,
    # the most confident first: the first tile of the first row is one of the slips, as the model saw it.
    with Image.open(out.with_suffix(".report.png")) as img:
        png = np.asarray(img.convert("RGB"))
    from edge.train.report import confusion_png, measure

    classes = ("absent", "present")  # the matrices' height depends on the classes alone
    with Image.open(io.BytesIO(confusion_png([measure("float", np.eye(2), np.arange(2), classes)], classes))) as img:
        top_height = img.height
    first = r["mistakes"][0]
    assert first["true"] == "absent" and first["path"] in {str(s) for s in slips}
    tile = png[top_height + 30 : top_height + 30 + 128, 6 : 6 + 128].astype(np.int16)
    with Image.open(first["path"]) as img:
        seen = np.asarray(img.convert("RGB"), np.int16)
    assert np.abs(tile - seen).mean() < 1.0
    manifest = json.loads(manifest_path(out).read_text())  # the daemon's light check compares the camera's frames with it
    assert manifest["labels"] == ["absent", "present"] and manifest["light_range"] == [low, high]
