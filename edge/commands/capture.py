"""`mnv1-edge capture`: save the configured source's frames as JPEGs, to sort into class folders for `train`."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from edge.commands import bounded_float, positive_int

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np

    from edge.config import Config

HELP = "save frames from the configured source (as the model sees them) as time-named JPEGs, for `mnv1-edge train`"
FIRST_FRAME_TIMEOUT_S = 20.0  # a camera that gives nothing this long is busy or gone: say so, do not hang
CAPTURE_CROP = 1.0  # the frames are the region of interest, uncropped: what `train` expects (its default --crop)
JPEG_QUALITY = 92


def add_arguments(p: argparse.ArgumentParser) -> None:
    from edge.config import DEFAULT_PATH

    p.add_argument("--config", default=str(DEFAULT_PATH), help="config file whose [source] to read (default: %(default)s)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the JPEGs (created; names sort by capture time)")
    p.add_argument("--every", type=bounded_float(0, 86400), default=1.0, metavar="S", help="seconds between saved frames (default: %(default)s)")
    p.add_argument("--count", type=positive_int, default=100, metavar="N", help="frames to save (default: %(default)s)")


def main(args: argparse.Namespace) -> int:
    from pathlib import Path

    from edge.config import load

    path = Path(args.config)
    config = load(path)
    out = Path(args.out)
    with service_lock(config):
        saved = capture(config, path, out, args.every, args.count)
    print(f"saved {saved} frames to {out}; sort them into {out}/<class name>/ folders, then run `mnv1-edge train --images {out} ...`")
    return 0


@contextmanager
def service_lock(config: Config) -> Iterator[None]:
    """Hold the daemon's state-directory lock while capturing: if the service holds it, it owns the
    camera, and a second opener would fail or hang; holding it keeps the service from starting meanwhile."""
    import os
    from pathlib import Path

    from edge.daemon import statelock
    from edge.errors import BusyError, SourceError

    try:
        fd = statelock.hold(Path(config.state_dir), create=False)  # no lock file: no daemon has run with this state_dir
    except BusyError:
        raise SourceError(
            f"{Path(config.state_dir) / statelock.NAME}: the service is running and owns the camera; "
            "stop it (sudo systemctl stop mnv1-edge), capture, then start it again"
        ) from None
    try:
        yield
    finally:
        if fd >= 0:
            os.close(fd)  # releases the flock


def capture(config: Config, config_path: Path, out: Path, every: float, count: int) -> int:
    """Save `count` frames, one per `every` seconds; the first frame must come within a deadline."""
    import threading
    import time

    from edge.errors import SinkError, SourceError
    from edge.fsutil import explain_mkdir
    from edge.sources import SourceSpec, make_source

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SinkError(f"{out}: cannot create the capture folder ({explain_mkdir(out, exc)})") from exc
    _write_info(config, config_path, out)
    # No centre crop: the frames are the region of interest as the model would see it with a model
    # trained on them (`train` records crop_fraction 1 in its manifest, which the daemon then applies).
    source = make_source(SourceSpec(config.source, CAPTURE_CROP))
    source.open()
    saved = 0
    try:
        timer = threading.Timer(FIRST_FRAME_TIMEOUT_S, source.interrupt)
        timer.daemon = True
        timer.start()
        due = time.monotonic()
        while saved < count:
            frame = source.read()
            if saved == 0:
                timer.cancel()
            if frame is None:
                if saved == 0:
                    raise SourceError(
                        f"{source.name}: no frame within {FIRST_FRAME_TIMEOUT_S:.0f} s; is the camera used by the service "
                        "(systemctl status mnv1-edge) or another program, or unplugged?"
                    )
                break  # a finite source (folder, file) ended
            if time.monotonic() < due:
                continue  # live sources deliver faster than --every: drop frames in between
            _save(frame.pixels, frame.ts, out)
            saved += 1
            due += every
            if not source.live and saved < count:
                time.sleep(max(0.0, due - time.monotonic()))
    finally:
        source.close()
    return saved


def _save(pixels: np.ndarray, ts: float, out: Path) -> None:
    import time

    from PIL import Image

    from edge.errors import SinkError

    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(ts)) + f".{int(ts % 1 * 1e6):06d}"
    path = out / f"{stamp}.jpg"
    n = 1
    while path.exists():  # two frames in the same microsecond (a fast file source)
        path, n = out / f"{stamp}-{n}.jpg", n + 1
    try:
        Image.fromarray(pixels).save(path, format="JPEG", quality=JPEG_QUALITY)
    except OSError as exc:
        raise SinkError(f"{path}: cannot write ({exc.strerror or exc}); free space in {out} or choose another --out") from exc


def _write_info(config: Config, config_path: Path, out: Path) -> None:
    """How the frames were made, for `train` to record in the model's manifest (the crop contract)."""
    import json

    from edge.errors import SinkError
    from edge.fsutil import write_atomic

    info = {
        "config": str(config_path),
        "source": config.source.kind,
        "crop_fraction": CAPTURE_CROP,
        "roi": list(config.source.roi),
        "frame": "128x128 RGB: the source's frames after its crop, exactly what the model is fed",
    }
    try:
        write_atomic(out / "capture.json", (json.dumps(info, indent=1, sort_keys=True) + "\n").encode())
    except OSError as exc:  # a full disk (before any frame is taken), a read-only folder
        raise SinkError(f"{out}: cannot write capture.json ({exc.strerror or exc}); free space there or choose another --out") from exc
