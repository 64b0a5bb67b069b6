"""A realistic fixed-camera video from still photos: each held for a while, with hand-shake and sensor noise."""

# What a camera on a shelf sees: the same scene frame after frame, moved by a pixel or two (a shaking
# mount, rolling-shutter wobble), with per-frame sensor noise and small exposure steps. A classifier's
# top-1 flickers on such input exactly where its top-1/top-2 margin is small, which is what the
# publish policy and smoothing defaults must cope with. Also run as a script for docs/design/demo.md.

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import numpy as np

WIDTH, HEIGHT = 320, 240
SHAKE_PX = 3  # the random walk of the view stays within this many pixels of the centre
NOISE_SIGMA = 4.0  # Gaussian sensor noise, in 8-bit levels (an indoor phone-camera-like level)
GAIN_STEP = 0.01  # auto-exposure wobble: the gain walks by up to ±1 % per frame, within ±4 %


def _scene(photo: Path) -> np.ndarray:
    """The photo scaled to cover the frame plus the shake margin (RGB uint8)."""
    from PIL import Image

    with Image.open(photo) as im:
        im = im.convert("RGB")
        w, h = WIDTH + 2 * SHAKE_PX, HEIGHT + 2 * SHAKE_PX
        scale = max(w / im.width, h / im.height)
        im = im.resize((max(w, round(im.width * scale)), max(h, round(im.height * scale))), Image.Resampling.BILINEAR)
        left, top = (im.width - w) // 2, (im.height - h) // 2
        return np.asarray(im.crop((left, top, left + w, top + h)), np.uint8)


def frames(photos: list[Path], frames_each: int, seed: int = 0) -> Iterator[np.ndarray]:
    """HEIGHT x WIDTH x 3 uint8 frames: each photo for `frames_each` frames, shaken and noisy."""
    rng = np.random.default_rng(seed)
    x = y = 0
    gain = 1.0
    for photo in photos:
        scene = _scene(photo).astype(np.float32)
        for _ in range(frames_each):
            x = int(np.clip(x + rng.integers(-1, 2), -SHAKE_PX, SHAKE_PX))
            y = int(np.clip(y + rng.integers(-1, 2), -SHAKE_PX, SHAKE_PX))
            gain = float(np.clip(gain + rng.uniform(-GAIN_STEP, GAIN_STEP), 0.96, 1.04))
            view = scene[SHAKE_PX + y : SHAKE_PX + y + HEIGHT, SHAKE_PX + x : SHAKE_PX + x + WIDTH]
            noisy = view * gain + rng.normal(0.0, NOISE_SIGMA, view.shape).astype(np.float32)
            yield np.clip(noisy + 0.5, 0, 255).astype(np.uint8)


def write_video(out: Path, photos: list[Path], frames_each: int, fps: int = 10, seed: int = 0) -> int:
    """Encode the frames as H.264 (near-lossless, so the noise survives); returns the frame count."""
    import av

    count = 0
    with av.open(str(out), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"crf": "12", "preset": "veryfast"}
        for pixels in frames(photos, frames_each, seed):
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
            count += 1
        for packet in stream.encode():
            container.mux(packet)
    return count


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("out", type=Path, help="output .mp4")
    p.add_argument("photos", nargs="+", type=Path, help="photos, shown in this order")
    p.add_argument("--seconds-each", type=float, default=60.0, help="how long each photo is in view (default: %(default)s)")
    p.add_argument("--fps", type=int, default=10, help="frame rate (default: %(default)s, the picamera2 source's default)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    n = write_video(args.out, args.photos, round(args.seconds_each * args.fps), args.fps, args.seed)
    print(f"{args.out}: {n} frames at {args.fps} fps ({n / args.fps:.0f} s)")


if __name__ == "__main__":
    main()
