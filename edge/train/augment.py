"""Augmentation for a fixed camera: what changes between its frames, and nothing that does not."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# A fixed camera sees the same scene from the same place; what varies is light (daylight, clouds,
# lamps), sensor noise, and a little framing (a nudged mount, vibration, a re-aimed ROI). So:
#   ON  small shifts / crops (up to `max_shift` of the side): a mount that moves by a few pixels;
#   ON  brightness and contrast: time of day and auto-exposure;
#   ON  sensor noise: low light on small sensors;
#   OFF horizontal flip: the scene is never mirrored, and left/right can be the class
#       ("car in the left bay"); flipping would teach the model to confuse them;
#   OFF rotation and vertical flip: a fixed camera does not rotate (and "upside down" can be a class);
#   OFF hue / colour jitter: white balance is stable, and colour is often the very thing to tell apart.


@dataclass(frozen=True)
class Augment:
    copies: int = 3  # augmented views per training image, besides the image itself
    max_shift: float = 0.06  # of the side
    brightness: float = 0.25  # x in [1-b, 1+b]
    contrast: float = 0.2
    noise_sigma: float = 4.0  # max standard deviation, in 0..255 levels
    seed: int = 0

    def describe(self) -> dict[str, str]:
        return {
            "shift_crop": f"on: up to {self.max_shift:.0%} of the side (a nudged mount)",
            "brightness": f"on: x{1 - self.brightness:.2f}..{1 + self.brightness:.2f} (daylight, auto-exposure)",
            "contrast": f"on: x{1 - self.contrast:.2f}..{1 + self.contrast:.2f}",
            "noise": f"on: gaussian, sigma up to {self.noise_sigma:g} levels (low light)",
            "horizontal_flip": "off: a fixed camera never sees its scene mirrored; left/right may be the class",
            "rotation": "off: the camera does not rotate; orientation may be the class",
            "hue": "off: white balance is stable and colour often is what tells classes apart",
            "copies": f"{self.copies} augmented views per training image plus the image itself",
        }

    def expand(self, frames: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The frames followed by `copies` augmented views of each; same seed, same bytes."""
        if self.copies <= 0:
            return frames, labels
        rng = np.random.default_rng(self.seed)
        views = [frames]
        for _ in range(self.copies):
            views.append(np.stack([self.one(f, rng) for f in frames]))
        return np.concatenate(views), np.tile(labels, self.copies + 1)

    def one(self, frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        from PIL import Image

        size = frame.shape[0]
        # Crop a window of (1 - s) of the side at a random offset and scale it back: shift + slight zoom.
        s = rng.uniform(0.0, self.max_shift)
        side = size * (1.0 - s)
        x0, y0 = rng.uniform(0.0, size - side), rng.uniform(0.0, size - side)
        img = Image.fromarray(frame).resize((size, size), Image.Resampling.BILINEAR, box=(x0, y0, x0 + side, y0 + side))
        x = np.asarray(img, np.float32)
        gain = rng.uniform(1.0 - self.brightness, 1.0 + self.brightness)
        contrast = rng.uniform(1.0 - self.contrast, 1.0 + self.contrast)
        mean = float(x.mean())
        x = (x - mean) * contrast + mean * gain
        sigma = rng.uniform(0.0, self.noise_sigma)
        x = x + rng.standard_normal(x.shape, dtype=np.float32) * np.float32(sigma)
        return np.clip(np.rint(x), 0, 255).astype(np.uint8)
