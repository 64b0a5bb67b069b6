"""Light guard: whether frames have left the light a model was trained in (its manifest's light_range)."""

# A model answers for the light its frames were taken in: trained on an afternoon, it may call
# every empty frame "present" once a lamp goes off, and nothing in its results shows it
# (docs/design/light-check.md). So every source.light_check_s the guard takes the frame's
# brightness and votes (edge/model/light.py): a subject filling the view for a few seconds must not
# raise an alarm, a light switched off must, within a minute. Each change is logged once. The
# moved-camera guard (edge/sources/moved.py) works alike; the two are independent.

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np

from edge.model.light import AS_TRAINED, LightRange, LightVote, luma
from edge.sources.frame import Source
from edge.sources.guard import PeriodicGuard
from edge.stats import SourceCounters

log = logging.getLogger("edge.sources.light")


class LightGuard(PeriodicGuard):
    """Wraps a source for a model that records its training light; its stats gain `light_luma` (the
    last frame checked's brightness, 0-255), `light_changed` (times the frames left that light) and
    `light_off` (1 while they are out of it, for `mnv1-edge fleet` and Home Assistant)."""

    def __init__(self, source: Source, trained: LightRange, every_s: float) -> None:
        super().__init__(source, every_s)
        self._vote = LightVote(trained)
        self._luma: float | None = None
        self._changed = 0

    def check(self, pixels: np.ndarray) -> None:
        brightness = luma(pixels)
        self._luma = brightness
        if not self._vote.add(brightness):
            return
        trained, state = self._vote.trained, self._vote.state
        if state == AS_TRAINED:
            log.warning("%s: the light is back within what the model was trained in (brightness %.0f of 255)", self.name, brightness)
            return
        self._changed += 1
        log.warning(
            "%s: the frames are %s than any light the model was trained in (brightness %.0f of 255, trained %s); "
            "its answers may be wrong: capture frames in this light and train again",
            self.name,
            "darker" if state == "dark" else "brighter",
            brightness,
            trained,
        )

    def stats(self) -> SourceCounters:
        off = int(self._vote.state != AS_TRAINED)
        shown = None if self._luma is None else round(self._luma)
        return replace(self.source.stats(), light_luma=shown, light_changed=self._changed, light_off=off)
