"""`python -m benchmarks.light_check --work DIR`: the daemon's light check on real footage (docs/design/light-check.md)."""

# For each scene of the real-footage benchmark (benchmarks/footage/scenes.json): the light range
# `train` would record from the first half in time, how far the later frames stray from it, and the
# daemon's vote (edge/model/light.py) replayed on them at source.light_check_s, as the daemon samples
# (every phase of the check period within the footage's frames). Then the same later frames with
# the light switched off (1/8 of it, sensor noise) for 90 s, and switched up (x4), to time the flag.
# Last, the worst case for a subject filling the view: a range from the empty frames alone.

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.footage import sources
from edge.model.light import AS_TRAINED, BRIGHT_MARGIN, CHECKS, DARK_MARGIN, NEED, LightRange, LightVote, luma

CHECK_S = 2.0  # source.light_check_s's default
GAMMA = 2.2
# A small sensor's noise in linear full-scale units (variance READ^2 + SHOT * light), as train's dimming probe.
READ_NOISE, SHOT_NOISE = 0.002, 0.0004
LIT_S, CHANGED_S, BACK_S = 30.0, 90.0, 60.0  # the synthesized light change: before, during, after


def relit(frame: np.ndarray, light: float, rng: np.random.Generator) -> np.ndarray:
    """The frame as the camera would take the scene in `light` times the light at the same exposure."""
    linear = (frame.astype(np.float64) / 255.0) ** GAMMA * light
    linear += rng.standard_normal(linear.shape) * np.sqrt(READ_NOISE**2 + SHOT_NOISE * linear)
    out: np.ndarray = np.rint(255.0 * np.clip(linear, 0.0, 1.0) ** (1.0 / GAMMA)).astype(np.uint8)
    return out


def load_frames(work: Path, scene: sources.Scene, numbers: range) -> np.ndarray:
    """The scene's frames as the daemon's model sees them: source.roi, no centre crop, 128x128."""
    from edge.model.preprocess import load_image
    from edge.model.region import Crop

    crop = Crop(roi=scene.roi(), fraction=1.0)
    return np.stack([load_image(sources.local_path(work, scene.source, scene.input.format(n=n)), crop) for n in numbers])


@dataclass(frozen=True)
class Replay:
    changes: list[list[tuple[float, str]]]  # per phase of the check period: (time, new state)

    def first(self, state: str, after: float) -> float | None:
        """The latest over all phases of the first change to `state` after `after`, seconds after it."""
        times = [next((t for t, s in c if s == state and t >= after), None) for c in self.changes]
        return None if any(t is None for t in times) else max(t for t in times if t is not None) - after

    @property
    def count(self) -> int:
        return max(len(c) for c in self.changes)


def replay(brightness: Callable[[float], float], trained: LightRange, duration: float, fps: float) -> Replay:
    """The vote as the daemon runs it: one check every CHECK_S s of a source at `fps`, for each phase."""
    step = max(1, round(CHECK_S * fps))
    out = []
    for phase in range(step):
        vote, changes = LightVote(trained), []
        for i in range(phase, int(duration * fps), step):
            if vote.add(brightness(i / fps)):
                changes.append((i / fps, vote.state))
        out.append(changes)
    return Replay(out)


def longest_run(outside: np.ndarray, fps: float) -> float:
    """The longest run of True, in seconds."""
    best = run = 0
    for o in outside:
        run = run + 1 if o else 0
        best = max(best, run)
    return best / fps


def trained_frames(work: Path, case: sources.Case, classes: tuple[str, ...]) -> np.ndarray:
    """The frames `train` would get for the case (the footage benchmark's prepared folders: <= 100 a class, first half in time)."""
    from PIL import Image

    from benchmarks.footage.prepare import folder, prepare

    prepare(work, case)
    paths = sorted(p for c in classes for p in (folder(work, case) / "train" / c).iterdir() if p.suffix == ".jpg")
    return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])


def measure(work: Path, case: sources.Case, later: np.ndarray, margins: list[float]) -> list[str]:
    """The margin sweep: a row per margin (the same both ways), trained on every class's frames."""
    fps = case.scene.fps
    lo, hi = (float(v) for v in np.percentile([luma(f) for f in trained_frames(work, case, ("absent", "present"))], (5, 95)))
    levels = np.array([luma(f) for f in later])
    switched = [Switched(later, light, fps) for light in (0.125, 4.0)]
    rows = []
    for margin in margins:
        trained = LightRange(lo, hi, margin, margin)
        first = margin == margins[0]
        cells = [case.name if first else "", str(trained) if first else "", _stray(levels, trained) if first else "", f"x{margin:g}"]
        cells += [*_silence(levels, trained, fps), *(s.timed(trained) for s in switched)]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def measure_empty(work: Path, case: sources.Case, later: np.ndarray) -> str:
    """The daemon's margins when the training frames never showed the subject (only 'absent' ones): the worst case for a car filling the view."""
    fps = case.scene.fps
    lo, hi = (float(v) for v in np.percentile([luma(f) for f in trained_frames(work, case, ("absent",))], (5, 95)))
    levels = np.array([luma(f) for f in later])
    trained = LightRange(lo, hi)
    return "| " + " | ".join([case.name, str(trained), _stray(levels, trained), *_silence(levels, trained, fps)]) + " |"


def _stray(levels: np.ndarray, trained: LightRange) -> str:
    """The later frames' brightness and how far the furthest strays from the trained light (a ratio)."""
    stray = max(trained.lo / max(levels.min(), 1e-9), levels.max() / trained.hi, 1.0)
    return f"{levels.min():.0f}-{levels.max():.0f}, x{stray:.2f}"


def _silence(levels: np.ndarray, trained: LightRange, fps: float) -> list[str]:
    """The later frames out of the trained light, and the vote's changes on them as the daemon runs it."""
    outside = np.array([trained.verdict(v) != AS_TRAINED for v in levels])
    duration = len(levels) / fps
    silent = replay(lambda t: float(levels[int(t * fps)]), trained, duration, fps)
    return [f"{outside.mean() * 100:.1f} %, longest {longest_run(outside, fps):.1f} s", f"{silent.count} in {duration:.0f} s"]


class Switched:
    """The later frames looped, the light at `light` times from LIT_S for CHANGED_S; brightness computed once per frame."""

    def __init__(self, later: np.ndarray, light: float, fps: float) -> None:
        self.later, self.light, self.fps = later, light, fps
        self.state = "dark" if light < 1 else "bright"
        self._rng = np.random.default_rng(0)
        self._cache: dict[int, float] = {}
        self._changed: list[float] = []

    def brightness(self, t: float) -> float:
        i = int(t * self.fps)
        if i not in self._cache:
            frame = self.later[i % len(self.later)]
            if LIT_S <= t < LIT_S + CHANGED_S:
                frame = relit(frame, self.light, self._rng)
                self._changed.append(luma(frame))
            self._cache[i] = luma(frame)
        return self._cache[i]

    def timed(self, trained: LightRange) -> str:
        """When the vote flags the change and clears it, and the changed frames' brightness."""
        result = replay(self.brightness, trained, LIT_S + CHANGED_S + BACK_S, self.fps)
        level = f"brightness {np.median(self._changed):.0f}: "
        flagged, cleared = result.first(self.state, LIT_S), result.first(AS_TRAINED, LIT_S + CHANGED_S)
        if flagged is None:
            return level + f"not flagged ({result.count} changes)"
        back = f"{cleared:.0f} s" if cleared is not None else "not cleared"
        return level + f"{flagged:.0f} s, cleared {back}, {result.count} changes"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.light_check", description=__doc__)
    work = "the footage benchmark's work directory (`python -m benchmarks.footage fetch --work DIR`)"
    parser.add_argument("--work", type=Path, required=True, help=work)
    parser.add_argument("--from", dest="copies", type=Path, action="append", default=[], metavar="DIR", help="as the footage benchmark's --from")
    margins = sorted({1.25, DARK_MARGIN, BRIGHT_MARGIN, 2.0})
    parser.add_argument("--margins", type=float, nargs="+", default=margins, help="margins to try, each both ways (default: %(default)s)")
    parser.add_argument("--cases", nargs="+", metavar="CASE", help="cases (default: every scene's own)")
    args = parser.parse_args(argv)
    try:
        manifest = sources.load()
        cases = [manifest.cases[c] for c in args.cases or manifest.scenes]
        sources.fetch(args.work, [c.scene for c in cases], args.copies)
    except (sources.FootageError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 65
    print(f"checks every {CHECK_S:g} s; a state changes when {NEED} of the last {CHECKS} agree; light switched at {LIT_S:g} s for {CHANGED_S:g} s")
    print()
    print(
        "| case | trained light (p5-p95) | later frames (range, stray) | margin | later frames outside | changes on the later frames "
        "| 1/8 light: flagged after | x4 light: flagged after |"
    )
    print("|---|---|---|---|---|---|---|---|")
    empty = []
    for case in cases:
        later = load_frames(args.work, case.scene, range(case.test_from, case.scene.last + 1))  # every frame: the vote runs in time
        for line in measure(args.work, case, later, sorted(args.margins)):
            print(line, flush=True)
        empty.append(measure_empty(args.work, case, later))
    print()
    print(f"trained on the empty frames only; margins x{DARK_MARGIN:g} below, x{BRIGHT_MARGIN:g} above (the daemon's)")
    print()
    print("| case | trained light (p5-p95) | later frames (range, stray) | later frames outside | changes on the later frames |")
    print("|---|---|---|---|---|")
    print("\n".join(empty))
    return 0


if __name__ == "__main__":
    sys.exit(main())
