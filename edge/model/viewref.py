"""The empty-scene references a scene model's manifest carries: 64x64 grey tiles in one PNG strip."""

from __future__ import annotations

import base64
import io

import numpy as np

SIDE = 64  # the 128x128 input, 2x2 averaged: enough for shifts of a pixel or two, small in a manifest


def grey(frame: np.ndarray) -> np.ndarray:
    """128x128x3 uint8 RGB -> 64x64 float32 grey (2x2 means)."""
    g = frame.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    h, w = g.shape
    out: np.ndarray = g.reshape(SIDE, h // SIDE, SIDE, w // SIDE).mean(axis=(1, 3))
    return out


def encode(references: np.ndarray) -> str:
    """K x 64 x 64 grey references (0-255) as one PNG strip, 64 x K*64, base64."""
    from PIL import Image

    strip = np.concatenate(list(np.clip(np.rint(references), 0, 255).astype(np.uint8)), axis=1)
    buf = io.BytesIO()
    Image.fromarray(strip, "L").save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def decode(text: str) -> np.ndarray:
    """The strip back to K x 64 x 64 float32; ValueError saying what is wrong with it."""
    import binascii

    from PIL import Image

    try:
        with Image.open(io.BytesIO(base64.b64decode(text, validate=True))) as img:
            if img.size[1] != SIDE or img.size[0] % SIDE or not 0 < img.size[0] <= 64 * SIDE:  # before decoding
                raise ValueError(f"a {img.size[0]}x{img.size[1]} image, expected 64 high and 64 to 4096 wide in steps of 64")
            strip = np.asarray(img.convert("L"), np.float32)
    except (OSError, binascii.Error, Image.DecompressionBombError) as exc:
        raise ValueError(f"not a readable PNG ({exc})") from exc
    return np.stack(np.split(strip, strip.shape[1] // SIDE, axis=1))
