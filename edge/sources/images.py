"""Images source: a folder, a glob or one file, optionally looping; unreadable files are skipped."""

from __future__ import annotations

import glob
import logging
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from edge.errors import SourceError
from edge.model.preprocess import IMAGE_SUFFIXES, STOCK_CROP, list_images, load_image
from edge.model.region import Crop
from edge.sources.frame import Frame
from edge.sources.still import file_still
from edge.stats import SourceCounters

if TYPE_CHECKING:
    from edge.config import ImagesSourceConfig

log = logging.getLogger("edge.sources.images")


def resolve(pattern: str) -> list[Path]:
    """The images a folder, a glob or a single file name, sorted by name."""
    path = Path(pattern)
    if path.is_dir():
        return list_images(path)
    if path.is_file():
        return [path]
    if glob.has_magic(pattern):
        return sorted(p for p in map(Path, glob.glob(pattern)) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    raise SourceError(f"source.images.path: {pattern} is not a folder, an image file or a glob")


class ImagesSource:
    """Reads every image once (or forever with `loop`), at the pace of inference."""

    live = False

    def __init__(self, config: ImagesSourceConfig, crop: Crop = STOCK_CROP) -> None:
        self.config = config
        self.crop = crop
        self.name = f"images:{config.path}"
        self._queue: list[Path] = []
        self._good_in_pass = 0
        self._read = 0
        self._skipped = 0
        self._passes = 0
        self._interrupted = False

    def open(self) -> None:
        self._next_pass()
        if not self._queue:
            raise SourceError(f"source.images.path: no images in {self.config.path} (suffixes {', '.join(IMAGE_SUFFIXES)})")

    def _next_pass(self) -> None:
        # Re-listed on every pass, so a looping folder picks up files added while it runs.
        self._queue = resolve(self.config.path)
        self._queue.reverse()  # pop() from the end = name order
        self._good_in_pass = 0
        self._passes += 1

    def read(self) -> Frame | None:
        while not self._interrupted:
            if not self._queue:
                # A pass that read nothing is a failure, looping or not: a run that classified
                # nothing must not end "successfully".
                if self._good_in_pass == 0:
                    raise SourceError(f"source.images.path: no readable image in {self.config.path} (each file was skipped; see the warnings above)")
                if not self.config.loop:
                    return None
                self._next_pass()
                continue
            path = self._queue.pop()
            try:
                pixels = load_image(path, self.crop, draft=self.config.draft, max_pixels=self.config.max_pixels, warn_upscaled=True)
            except SourceError as exc:
                # A corrupt or vanished file must not stop a folder run: count it, say which, go on.
                self._skipped += 1
                log.warning("skipped unreadable image: %s", exc)
                continue
            self._read += 1
            self._good_in_pass += 1
            return Frame(pixels, time.time(), path.name, still=partial(file_still, path))
        return None

    def stats(self) -> SourceCounters:
        return SourceCounters(self._read, skipped=self._skipped, passes=self._passes)

    def interrupt(self) -> None:
        self._interrupted = True

    def close(self) -> None:
        self._queue = []
