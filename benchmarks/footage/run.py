"""Train every head on each case through the real CLI, measure each model on the later frames, print one table."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.footage.prepare import Prepared, folder, later_frames
from benchmarks.footage.sources import Case
from edge.train import heads

REPO = Path(__file__).resolve().parents[2]
# `mnv1-edge train --head` values, auto last; a head train does not know fails its row, not the run.
HEADS = (*heads.NAMES, "auto")


@dataclass(frozen=True)
class Job:
    case: Case
    head: str

    def dir(self, work: Path) -> Path:
        return work / "models" / self.case.name / self.head

    def __str__(self) -> str:
        return f"{self.case.name}/{self.head}"


def code_digest() -> str:
    """The training code that made a model: a changed edge/ retrains, an unchanged one reuses."""
    h = hashlib.sha256()
    for path in sorted((REPO / "edge").rglob("*.py")):
        h.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def folder_digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def train_all(work: Path, jobs: list[Job], train_args: list[str], parallel: int, source: str | None) -> dict[Job, dict[str, Any]]:
    """Each job's training record; a cached one when the frames, the arguments and edge/ are unchanged."""
    code = code_digest()
    threads = max(1, 2 // parallel)  # 2 cores in all

    def one(job: Job) -> dict[str, Any]:
        return _train(work, job, train_args, source, code, threads)

    with ThreadPoolExecutor(parallel) as pool:
        return dict(zip(jobs, pool.map(one, jobs), strict=True))


def _train(work: Path, job: Job, train_args: list[str], source: str | None, code: str, threads: int) -> dict[str, Any]:
    out = job.dir(work)
    images = folder(work, job.case) / "train"
    # No --held-out / --held-out-images: the report's held-out figure is whatever train does by default.
    args = ["--min-accuracy", "0", "--min-agreement", "0", "--allow-imbalance"]
    args += [] if job.head == "auto" else ["--head", job.head]
    args += train_args
    key = hashlib.sha256(json.dumps([code, folder_digest(images), args, source]).encode()).hexdigest()
    record_path = out / "train.json"
    if record_path.is_file():
        record: dict[str, Any] = json.loads(record_path.read_text(encoding="utf-8"))
        if record.get("key") == key:
            return record
    out.mkdir(parents=True, exist_ok=True)
    model, report = out / "model.tflite", out / "report.json"
    for stale in (model, report, out / "model.tflite.json", out / "result.json"):
        stale.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "edge", "train", "--images", str(images), "--out", str(model), "--report", str(report)]
    cmd += ["--source", source] if source else []
    cmd += args
    env = os.environ | {
        "PYTHONPATH": str(REPO),
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "TF_NUM_INTRAOP_THREADS": str(threads),
        "OMP_NUM_THREADS": str(threads),
    }
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, check=False)
    wall = round(time.perf_counter() - t0, 1)
    (out / "train.log").write_text(f"$ {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}", encoding="utf-8")
    record = {"key": key, "head": job.head, "args": args, "exit": proc.returncode, "wall_s": wall}
    if report.is_file():
        record |= _from_report(json.loads(report.read_text(encoding="utf-8")))
    if proc.returncode != 0 or not model.is_file():
        last = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
        record["failed"] = last
    record_path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    print(f"{job}: {_outcome(record)} ({wall:.0f} s)", file=sys.stderr, flush=True)
    return record


def _from_report(report: dict[str, Any]) -> dict[str, Any]:
    """What the table needs from train's report; read defensively: others are changing its internals."""
    held = report.get("held_out") or [{}]
    head = report.get("head") or {}
    return {
        "chosen": head.get("input"),
        "report_held_out": held[-1].get("accuracy"),
        "report_split": (report.get("images") or {}).get("split"),
        "cv": head.get("cv_accuracy"),
    }


def _outcome(record: dict[str, Any]) -> str:
    if "failed" in record:
        return f"failed (exit {record['exit']}): {record['failed']}"
    return f"{record.get('chosen')}, report's held-out {record.get('report_held_out')} %"


def measure_all(work: Path, jobs: list[Job], trained: dict[Job, dict[str, Any]]) -> dict[Job, dict[str, Any]]:
    from benchmarks.footage.measure import measure

    results: dict[Job, dict[str, Any]] = {}
    for job in jobs:
        record = trained[job]
        if "failed" in record:
            continue
        model = job.dir(work) / "model.tflite"
        frames, truth, _ = later_frames(work, job.case)
        key = hashlib.sha256(model.read_bytes() + frames.tobytes() + truth.tobytes()).hexdigest()
        path = job.dir(work) / "result.json"
        if path.is_file() and (saved := json.loads(path.read_text(encoding="utf-8"))).get("key") == key:
            results[job] = saved
            continue
        result = {"key": key} | measure(model, frames, truth)
        path.write_text(json.dumps(result) + "\n", encoding="utf-8")
        ref, xnn = result["reference"], result["xnnpack"]
        print(f"{job}: later frames {ref['accuracy']} % (XNNPACK here {xnn['accuracy']} %)", file=sys.stderr, flush=True)
        results[job] = result
    return results


def table(cases: list[tuple[Case, Prepared]], heads: tuple[str, ...], trained: dict[Job, dict[str, Any]], results: dict[Job, dict[str, Any]]) -> str:
    """One markdown table: case x head; each figure as 'reference kernels (XNNPACK on this x86)'."""
    lines = [
        '| case: later frames (absent / present) | head | report\'s held-out % | later frames: accuracy % | false "present" % | missed "present" % |',
        "|---|---|---|---|---|---|",
    ]
    for case, prep in cases:
        first = True
        for head in heads:
            job = Job(case, head)
            if job not in trained:
                continue
            record = trained[job]
            where = f"{case.title}: {prep.later['absent']} / {prep.later['present']}" if first else ""
            first = False
            name = f"**auto** ({record.get('chosen')})" if head == "auto" and record.get("chosen") else head
            held = _num(record.get("report_held_out"))
            if "failed" in record:
                lines.append(f"| {where} | {name} | {held} | failed (exit {record['exit']}): {record['failed'][:120]} | | |")
                continue
            r = results[job]
            cells = [_pair(r, key) for key in ("accuracy", "false_present", "miss")]
            lines.append(f"| {where} | {name} | {held} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _pair(result: dict[str, Any], key: str) -> str:
    ref, xnn = result["reference"][key], result["xnnpack"][key]
    return f"{_num(ref)} ({_num(xnn)})" if ref != xnn else _num(ref)


def _num(x: Any) -> str:
    return "–" if x is None else f"{float(x):.1f}"


def verdict(case: Case, heads: tuple[str, ...], trained: dict[Job, dict[str, Any]], results: dict[Job, dict[str, Any]]) -> str:
    """Which head did best on the later frames (reference kernels), and what auto took."""
    scores = {h: results[Job(case, h)]["reference"]["accuracy"] for h in heads if h != "auto" and Job(case, h) in results}
    line = f"- {case.name}: best on the later frames "
    line += ", ".join(f"{h} {a:.1f}" for h, a in sorted(scores.items(), key=lambda kv: -kv[1])[:2]) if scores else "(none measured)"
    auto = Job(case, "auto")
    if auto in results:
        line += f"; auto took {trained[auto].get('chosen')}: {results[auto]['reference']['accuracy']:.1f}"
    return line


def describe(case: Case, prep: Prepared) -> str:
    """One line per case for the report under the table: what was trained on and measured."""
    scene = case.scene
    x, y, side = scene.region
    return (
        f"- {case.title}: region {side}x{side} px at ({x}, {y}) of {scene.size[0]}x{scene.size[1]}; frames {scene.first}-{scene.last} "
        f"labelled {prep.labels['absent']} absent, {prep.labels['present']} present, {prep.labels['excluded']} left out; trained on "
        f"{prep.train['absent']} + {prep.train['present']} frames from {prep.train_frames[0]}-{prep.train_frames[1]}, measured on "
        f"{prep.later['absent']} + {prep.later['present']} from {prep.later_frames[0]}-{prep.later_frames[1]}"
    )
