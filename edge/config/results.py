"""The `[results]` settings: what is published, and how often."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from edge.config.fields import Need, setting


@dataclass(frozen=True)
class ResultsConfig:
    groups: tuple[str, ...] = setting(
        (), "label groups the answer is chosen among (built-in: bird, dog, cat, animal, vehicle, food; or [groups]); empty = the top-1 label"
    )
    top_k: int = setting(5, "how many classes each record lists", ge=1, le=1001)
    threshold: float = setting(0.0, 'drop classes scoring below this from top_k; the answer is "none" below it', ge=0, le=1)
    smoothing: Literal["none", "ema", "vote"] = setting("vote", "temporal smoothing of the probabilities")
    ema_alpha: float = setting(0.5, "weight of the newest frame in the EMA (smoothing = ema)", gt=0, le=1)
    vote_window: int = setting(10, "frames in the N-of-M vote window (smoothing = vote)", ge=1, le=1000)
    vote_min: int = setting(7, "votes a label needs in the window to become the top label (smoothing = vote)", ge=1)
    hysteresis: float = setting(0.0, "a new top label must beat the current one by this margin to replace it", ge=0, le=1)
    publish: Literal["every", "change", "interval"] = setting("change", "publish every frame, on a change of the answer, or at most every interval_s")
    interval_s: float = setting(1.0, "minimum seconds between records (publish = interval)", gt=0)
    heartbeat_s: float = setting(60.0, "with publish = change/interval: publish the current result at least this often; 0 = never", ge=0)

    def check(self, need: Need) -> None:
        need(self.vote_min <= self.vote_window, "vote_min", "must be between 1 and vote_window")
