"""What the training frames cover: which light (and the probe of a light they never showed), how many visits of each class."""

from __future__ import annotations

from typing import Any

import numpy as np

# A model answers for the light its frames were taken in. Frames of one afternoon say nothing of the
# night: measured on real footage (docs/train.md), heads trained with the lights on called every
# empty frame "present" once they went off, while their held-out figure said 100 %. So `train` says
# which brightness each class's frames span, warns when they span little, and, when they do,
# `auto` asks every head what it makes of the training frames dimmed (a camera's view of the same
# scene in less light) and leaves out the heads that turn that into another class.

NARROW = 2.0  # the brightest training frames (95th percentile) less than this many times the darkest (5th): one light
GAMMA = 2.2  # the camera's encoding: pixel = 255 * light ** (1 / GAMMA)
PROBE_LIGHT = 0.125  # the probe's light, of the training frames' (an eighth: a lamp off, dusk; auto-exposure not modelled)
READ_NOISE = 0.002  # the probe sensor's noise floor and shot-noise coefficient, in linear full-scale units
SHOT_NOISE = 0.0004  # (variance = READ_NOISE^2 + SHOT_NOISE * light: a small sensor, SNR ~50 at full well)


# A class seen in fewer stretches of time than this (dataset.visits) gives cross-validation in time
# one pass of one subject to cut into folds. On the corridor footage every fold of one person's walk
# in scored 99.8-100 % for positions and change alike; the later frames, the same person walking
# away half out of view, gave 86 % and 100 % (docs/design/footage-benchmark.md). So with fewer
# visits `auto` waives the cost margins: a tie goes to the head that does not learn the subject.
MIN_VISITS = 3


def few_visits(visits: dict[str, int]) -> bool:
    return bool(visits) and min(visits.values()) < MIN_VISITS


def visits_note(visits: dict[str, int]) -> str:
    few = ", ".join(f"{c!r} {n}" for c, n in visits.items() if n < MIN_VISITS)
    return (
        f"time: few stretches of time per class ({few}; another class's frames end a stretch): the held-out frames are "
        "the end of a stretch the model trained on, not a visit it never saw, so the held-out figure can be high where "
        "later frames are not (other people, other places in the view); capture each class "
        f"on {MIN_VISITS} or more occasions and train again"
    )


def brightness(frames: np.ndarray) -> np.ndarray:
    """N: each uint8 RGB frame's mean luma (Rec. 601), 0-255."""
    weights = np.array([0.299, 0.587, 0.114])
    out: np.ndarray = frames.reshape(len(frames), -1, 3).astype(np.float64).mean(axis=1) @ weights
    return out


def coverage(frames: np.ndarray, labels: np.ndarray, classes: tuple[str, ...], train: np.ndarray, held_out: np.ndarray) -> dict[str, Any]:
    """The report's `conditions`: each class's brightness (5th percentile, median, 95th) in training and
    held out, the training frames' span, and whether it is narrow (under NARROW)."""
    level = brightness(frames)

    def spread(idx: np.ndarray) -> list[float] | None:
        return [round(float(v), 1) for v in np.percentile(level[idx], (5, 50, 95))] if len(idx) else None

    per_class = {
        name: {"train": spread(train[labels[train] == i]), "held_out": spread(held_out[labels[held_out] == i])} for i, name in enumerate(classes)
    }
    low, high = np.percentile(level[train], (5, 95))
    span = float(high) / max(float(low), 1.0)
    return {
        "brightness": per_class,
        "brightness_train": [round(float(low), 1), round(float(high), 1)],
        "span": round(span, 2),
        "narrow": span < NARROW,
        "what": "mean luma of each frame (0-255, Rec. 601): 5th percentile, median, 95th; span: the training frames' 95th over 5th",
    }


def narrow_note(cover: dict[str, Any]) -> str:
    low, high = cover["brightness_train"]
    return (
        f"light: every training frame was taken in about one light (brightness {low:g}-{high:g} of 255, a span of x{cover['span']:g}): "
        "the held-out figure says nothing of darker or brighter scenes (night, a lamp off, sun); capture frames of every class "
        "in each light the camera will see, and train again"
    )


def dimmed(frames: np.ndarray, light: float = PROBE_LIGHT, seed: int = 0) -> np.ndarray:
    """The frames as a camera would take the same scene in `light` times the light, at the same
    exposure: the encoding undone (pixel / 255) ** GAMMA, the light scaled, a small sensor's noise
    (READ_NOISE, SHOT_NOISE) added, clipped, encoded again in 8 bits. Seeded: the same frames give
    the same bytes."""
    rng = np.random.default_rng(seed)
    linear = (frames.astype(np.float64) / 255.0) ** GAMMA * light
    linear += rng.standard_normal(linear.shape) * np.sqrt(READ_NOISE**2 + SHOT_NOISE * linear)
    out: np.ndarray = np.rint(255.0 * np.clip(linear, 0.0, 1.0) ** (1.0 / GAMMA)).astype(np.uint8)
    return out


def kept(probs: np.ndarray, labels: np.ndarray, classes: tuple[str, ...]) -> dict[str, float]:
    """Per class, the share (percent) of frames the model still gives their class."""
    pred = np.argmax(probs, axis=1)
    return {name: round(100.0 * float(np.mean(pred[labels == i] == i)), 1) for i, name in enumerate(classes) if np.any(labels == i)}


def dimmed_note(kept_in_class: dict[str, float], floor: float) -> str | None:
    """The note when the deployed model turns dimmed training frames of some class into another."""
    low = {c: v for c, v in kept_in_class.items() if v < floor}
    if not low:
        return None
    shown = ", ".join(f"{c!r} {v:g} %" for c, v in low.items())
    return (
        f"light: the int8 model keeps only {shown} of the training frames in their class once dimmed to {PROBE_LIGHT:g} of the light: "
        "in less light than these frames show it will answer another class; capture frames of every class in that light "
        "and train again (meanwhile the daemon's light check reports such frames)"
    )
