"""A fixed camera's view as a trained model's manifest carries it (64x64 grey tiles in one PNG strip), and a frame's shift from it."""

from __future__ import annotations

import base64
import io

import numpy as np

SIDE = 64  # the 128x128 input, 2x2 averaged: enough for shifts of a pixel or two, small in a manifest


def grey(frame: np.ndarray) -> np.ndarray:
    """128x128x3 uint8 RGB -> 64x64 float32 grey (2x2 means). Element by element, no BLAS or
    reductions, so the manifest's references come out the same on every CPU."""
    f = frame.astype(np.float32)
    g = f[:, :, 0] * np.float32(0.299) + f[:, :, 1] * np.float32(0.587) + f[:, :, 2] * np.float32(0.114)
    out: np.ndarray = (g[0::2, 0::2] + g[0::2, 1::2] + g[1::2, 0::2] + g[1::2, 1::2]) * np.float32(0.25)
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


# Measured on the bench's bird task (docs/design/train.md, `train_bench --only nudge`): held-out frames
# against their references match at 0.98 (lowest 0.47) with shifts of at most 0.07 px; nudged by
# 2 / 4 / 8 px (a crop from the corner, rescaled), 1.3 / 2.8 / 5.6 px, match 0.41 / 0.71 / 0.37
# (lowest 0.18); 60 other dev-set scenes match at 0.10 (90 % below 0.11). The 2 px nudge already
# costs the scene head 6 points on present frames, so 1 px counts as moved.
MOVED_PX = 1.0  # of the 128 px input
MIN_PEAK = 0.15  # below this the frame matches no reference at any shift


class ShiftEstimator:
    """Phase correlation of a frame against K references; the references' spectra are computed once."""

    def __init__(self, references: np.ndarray) -> None:
        self._window = np.outer(np.hanning(SIDE), np.hanning(SIDE)).astype(np.float32)
        self._spectra = [np.conj(np.fft.rfft2(self._prepared(r))) for r in references]  # real input: half the spectrum

    def _prepared(self, g: np.ndarray) -> np.ndarray:
        out: np.ndarray = (g - g.mean()) * self._window
        return out

    def estimate(self, frame: np.ndarray) -> tuple[float, float]:
        """(shift in px of the 128 px input, peak 0..1) against the best-matching reference."""
        spectrum = np.fft.rfft2(self._prepared(grey(frame)))
        best = (0.0, -1.0)
        for ref in self._spectra:
            cross = spectrum * ref
            corr = np.fft.irfft2(cross / (np.abs(cross) + 1e-6), s=(SIDE, SIDE))
            iy, ix = np.unravel_index(int(np.argmax(corr)), corr.shape)
            peak = float(corr[iy, ix])
            if peak > best[1]:
                dy, dx = _refine(corr[:, ix], int(iy)), _refine(corr[iy, :], int(ix))
                best = (2.0 * float(np.hypot(dy, dx)), peak)
        return best


def _refine(line: np.ndarray, i: int) -> float:
    """The peak's signed offset along `line`, to a fraction of a pixel (a parabola through 3 points)."""
    a, b, c = line[(i - 1) % SIDE], line[i], line[(i + 1) % SIDE]
    curvature = a - 2 * b + c
    offset = i + (float(np.clip(0.5 * (a - c) / curvature, -0.5, 0.5)) if curvature < 0 else 0.0)
    return offset - SIDE if offset > SIDE / 2 else offset
