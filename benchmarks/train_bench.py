"""Measure `mnv1-edge train` on tasks built from real photos: `python -m benchmarks.train_bench --work DIR`."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import tasks
from edge import paths

REPO = Path(__file__).resolve().parents[1]


# The present/absent tasks' heads: the average-pooled features, the per-position head at the stock
# model's cost, then auto (which may take a 2x head, or one against the empty scene: scene-2x, change).
HEADS = {"features": ("--head", "features"), "positions": ("--head", "positions"), "auto": ()}


def train(images: Path, out: Path, *extra: str) -> dict[str, Any]:
    """One `mnv1-edge train` in its own process (its own peak memory), 2 threads; returns its report."""
    report = out.with_suffix(".json")
    cmd = [sys.executable, "-m", "edge", "train", "--images", str(images), "--out", str(out), "--report", str(report)]
    cmd += ["--source", str(paths.float_model()), "--min-accuracy", "0", "--min-agreement", "0", *extra]
    env = os.environ | {"PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3", "TF_NUM_INTRAOP_THREADS": "2", "OMP_NUM_THREADS": "2"}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{images}: train failed: {proc.stderr.strip().splitlines()[-1]}")
    data: dict[str, Any] = json.loads(report.read_text())
    data["wall_s"] = round(time.perf_counter() - t0, 1)
    return data


def zero_shot(held_out: Path, groups: dict[str, tuple[int, ...] | range]) -> float:
    """The float ImageNet model's group answer (sum of each group's probabilities), no training."""
    from edge.convert import rebuild
    from edge.train import dataset

    data = dataset.load(held_out, dataset.Limits(min_per_class=1, allow_imbalance=True), 1.0)
    model = rebuild.build_keras(rebuild.read_layers(paths.float_model().read_bytes(), "float"), "float64", 1)
    probs = np.concatenate([np.asarray(model(data.frames[i : i + 50], training=False)).reshape(-1, 1001) for i in range(0, len(data.frames), 50)])
    names = list(data.classes)
    sums = np.zeros((len(probs), len(names)))
    for index in range(1, probs.shape[1]):
        sums[:, names.index(tasks.group_of(index, groups))] += probs[:, index]
    return round(100.0 * float(np.mean(np.argmax(sums, axis=1) == data.labels)), 1)


def held_out(images: Path) -> tuple[Any, np.ndarray]:
    """The task's frames and the indices `train --split random --held-out 0.5` held out."""
    from edge.train import dataset

    data = dataset.load(images, dataset.Limits(), 1.0)
    return data, dataset.split_at_random(data, 0.5).held_out


def size_breakdown(model: Path, images: Path) -> str:
    """int8 accuracy on held-out 'present' frames by subject width (the names record it)."""
    from edge.model.engine import Engine
    from edge.model.preprocess import load_image
    from edge.model.region import NO_CROP

    data, test = held_out(images)
    engine = Engine(model)
    rows = {"5-10%": [0, 0], "10-20%": [0, 0], "absent": [0, 0]}
    for i in test:
        name = data.paths[i].stem
        width = int(name.rsplit("_w", 1)[1])
        bucket = "absent" if width == 0 else "5-10%" if width < 0.10 * tasks.FRAME[0] else "10-20%"
        right = int(np.argmax(engine.classify(load_image(data.paths[i], NO_CROP)))) == int(data.labels[i])
        rows[bucket][0] += right
        rows[bucket][1] += 1
    return ", ".join(f"{k}: {r}/{n}" for k, (r, n) in rows.items())


def shifted(model: Path, images: Path, shifts: tuple[float, ...], slides: tuple[float, ...] = ()) -> str:
    """int8 accuracy on the held-out frames with the view moved by each of `shifts` px of the 128
    (cropped at the top left and scaled back: a nudged mount, a little zoom; the move is the full
    shift at the top left and none at the bottom right) and slid sideways by each of `slides` px
    (the whole frame alike), absent and present apart."""
    from PIL import Image

    from edge.model.engine import Engine
    from edge.model.viewref import MIN_PEAK, MOVED_PX, ShiftEstimator

    data, test = held_out(images)
    engine = Engine(model)
    refs = engine.manifest.view_references()
    check = None if refs is None else ShiftEstimator(refs)  # what the daemon's moved-camera check would say
    parts = []

    def nudge(img: Image.Image, px: float) -> Image.Image:
        return img.resize(img.size, Image.Resampling.BILINEAR, box=(px, px, 128, 128)) if px else img

    def slide(img: Image.Image, px: float) -> Image.Image:
        return img.transform(img.size, Image.Transform.AFFINE, (1, 0, px, 0, 1, 0), Image.Resampling.BILINEAR)

    moves = [(f"{px:g} px", nudge, px) for px in shifts] + [(f"slid {px:g} px", slide, px) for px in slides]
    for name, move, px in moves:
        right = np.zeros((2, 2), np.int64)  # [class][right, all]
        views = []
        for i in test:
            frame = np.asarray(move(Image.fromarray(data.frames[i]), px))
            label = int(data.labels[i])
            right[label] += (int(np.argmax(engine.classify(frame))) == label, 1)
            if check is not None:
                views.append(check.estimate(frame))
        part = f"{name}: " + " ".join(f"{data.classes[c]} {right[c, 0]}/{right[c, 1]}" for c in range(2))
        if views:
            v = np.array(views)
            off = np.mean((v[:, 0] >= MOVED_PX) | (v[:, 1] < MIN_PEAK))
            match = f"match {np.median(v[:, 1]):.2f} (lowest {v[:, 1].min():.2f})"
            part += f" (view check: shift {np.median(v[:, 0]):.1f} px, {match}, {100 * off:.0f} % off)"
        parts.append(part)
    return "; ".join(parts)


def row(task: str, report: dict[str, Any], extra: str = "") -> str:
    held = {m["name"]: m for m in report["held_out"]}
    deployed = list(held.values())[-1]
    img, cost = report["images"], report["cost"]
    return (
        f"| {task} | {img['train']}/{img['held_out']} | {report['head']['input']} | {held['float']['accuracy']:.1f} | "
        f"{held['int8 plain']['accuracy']:.1f} | {deployed['accuracy']:.1f} | {deployed['agreement']:.1f} | {extra} | "
        f"{cost['total_s']:.0f} s, {cost['peak_rss_mb']:.0f} MB |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--work", type=Path, required=True, help="scratch folder for the tasks and models")
    tasks_help = "tasks: presence (or presence-cat, ...), other, nudge, orientation, animal, dog, timing"
    parser.add_argument("--only", nargs="*", default=None, help=tasks_help)
    parser.add_argument("--heads", nargs="*", choices=tuple(HEADS), default=tuple(HEADS), help="the present/absent tasks' heads (default: all)")
    args = parser.parse_args()
    work: Path = args.work
    dev, samples = paths.dev_images(), paths.sample_images()
    lines = [
        "| task | train/held out | head | float % | int8 plain % | int8 % | agree % | zero-shot % or note | time, peak memory |",
        "|" + "---|" * 9,
    ]
    todo = args.only

    def want(name: str) -> bool:
        return todo is None or name in todo

    # Owl and Grace Hopper were added after the scene head's layer was chosen on the first five: the check that the choice holds.
    subjects = (("cat.bmp", 1), ("parrot.jpg", 2), ("hot_dog.jpg", 3), ("bird.bmp", 5), ("dragonfly.bmp", 6), ("owl.jpg", 7), ("grace_hopper.bmp", 8))
    for subject, seed in subjects:
        name = f"present/absent {subject.split('.')[0]}"
        if want("presence") or want(f"presence-{subject.split('.')[0]}"):
            images = tasks.presence_task(work / f"presence_{seed}", dev, samples / subject, 400, seed)
            for label in args.heads:
                extra = HEADS[label]
                out = work / f"presence_{seed}_{label}.tflite"
                report = train(images, out, "--split", "random", "--held-out", "0.5", *extra)
                lines.append(row(f"{name} ({label})", report, "by subject width: " + size_breakdown(out, images)))
                print(lines[-1], flush=True)
    if want("other"):
        # "Is there a bird?" when a cat comes by too: the change head sees any change, the scene head
        # tells what changed; auto must not take the change head here.
        images = tasks.presence_task(work / "other_5", dev, samples / "bird.bmp", 400, 5, other=samples / "cat.bmp")
        for label, extra in (("auto", ()), ("change", ("--head", "change"))):
            out = work / f"other_5_{label}.tflite"
            report = train(images, out, "--split", "random", "--held-out", "0.5", "--min-accuracy", "0", "--min-agreement", "0", *extra)
            sizes = "by subject width: " + size_breakdown(out, images)
            lines.append(row(f"present/absent bird, a cat in a third of the frames ({label})", report, sizes))
            print(lines[-1], flush=True)
    if want("nudge"):
        # The camera moves after training: the bird task's held-out frames, shifted (scene-2x and change assume the empty scene stays).
        images = tasks.presence_task(work / "presence_5", dev, samples / "bird.bmp", 400, 5)
        for head in ("scene-2x", "change"):
            out = work / f"nudge_{head}.tflite"
            train(images, out, "--split", "random", "--held-out", "0.5", "--head", head)
            lines.append(f"| nudged camera, bird ({head}) | {shifted(out, images, (0, 1, 2, 4, 8), (0.5, 1))} |")
            print(lines[-1], flush=True)
    if want("orientation"):
        tr = tasks.orientation_task(work / "orient_train", dev, 0, 200, 4)
        te = tasks.orientation_task(work / "orient_test", dev, 250, 200, 5)
        for head in ("features",):
            report = train(tr, work / f"orient_{head}.tflite", "--held-out-images", str(te), "--head", head)
            lines.append(row(f"upright/upside down ({head})", report, "no ImageNet group"))
            print(lines[-1], flush=True)
    groups: dict[str, dict[str, tuple[int, ...] | range]] = {
        "animal/object": {"animal": tasks.ANIMALS, "object": range(399, 1001)},
        "dog/bird/other": {"dog": tasks.DOGS, "bird": tasks.BIRDS},
    }
    caps = {"animal/object": {"animal": 100, "object": 100}, "dog/bird/other": {"other": 60}}
    for task, group in groups.items():
        if not want(task.split("/")[0]):
            continue
        slug = task.replace("/", "_")
        tr = tasks.group_task(work / f"{slug}_train", dev, group, 0, caps[task])
        te = tasks.group_task(work / f"{slug}_test", dev, group, 1, caps[task])
        zs = zero_shot(te, group)
        for head in ("features",):
            report = train(tr, work / f"{slug}_{head}.tflite", "--held-out-images", str(te), "--head", head, "--allow-imbalance")
            lines.append(row(f"{task}, unseen classes ({head})", report, f"zero-shot {zs}"))
            print(lines[-1], flush=True)
    if want("timing"):
        images = tasks.presence_task(work / "presence_500", dev, samples / "owl.jpg", 500, 9)
        report = train(images, work / "presence_500.tflite", "--held-out", "0.2")
        lines.append(row("timing: 500 images (owl)", report, f"wall {report['wall_s']} s incl. start-up"))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
