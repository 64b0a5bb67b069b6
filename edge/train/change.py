"""The change head: how far a frame is, pixel by pixel, from the nearest frame of the empty scene."""

from __future__ import annotations

import numpy as np

from edge.train import scene

# The scene-2x head's last misses were 10-16 px subjects that blend in (a grey-brown dragonfly on
# bark): too small and too like their surroundings for the pretrained filters, yet their pixels still
# differ from the same place in the empty scene, which a fixed camera shows again and again
# (measured in docs/train.md). So each frame is standardised (zero mean, unit spread over all its
# pixels: daylight gain and auto-exposure contrast drop out), smoothed a little, registered to each
# of K prototypes of the empty class's standardised frames (k-means, as scene.py) and scored by
#     min over k of (max over 3x3 boxes of the box mean of sum over RGB of |residual_k|),
# where residual_k is what is left of the frame minus prototype k after the best small affine move
# of the prototype (a first-order model, below). The right scene differs only where something new
# is; a wrong one differs everywhere. A linear layer on that one number gives the two classes'
# logits. One number answers one question, "is anything there that the empty frames do not show?":
# two classes, one of them the empty scene. It cannot tell a bird from a cat. In the model the
# backbone falls out (edge/train/build.py).

BOX = 3  # px of the 128: averages sensor noise, keeps a 6 px subject
# The [1, 2, 1] x [1, 2, 1] / 16 smoothing before the comparison: it keeps the first-order move
# model true over a pixel's move (measured, docs/train.md: without it a 1 px nudge left 10 of 100
# empty dragonfly frames 'present'; smoothing twice cost the small subjects).
SMOOTH = np.outer([1.0, 2.0, 1.0], [1.0, 2.0, 1.0]) / 16.0
EPS = 1e-6  # added to the variance (in the model's [-1, 1] pixel units) before the reciprocal root
BATCH = 64  # frames standardised at a time: 25 MB in float64


def standardise(frames: np.ndarray) -> np.ndarray:
    """N x H x W x 3 float32: each uint8 frame in the model's [-1, 1] units, minus its mean, over
    its spread. The statistics are float64 sums; the rest is element-wise: the same on every CPU."""
    x = frames.astype(np.float64) / 127.5 - 1.0
    x -= x.mean(axis=(1, 2, 3), keepdims=True)
    x /= np.sqrt((x * x).mean(axis=(1, 2, 3), keepdims=True) + EPS)
    out: np.ndarray = x.astype(np.float32)
    return out


def smooth(z: np.ndarray) -> np.ndarray:
    """N x (H-2) x (W-2) x C: SMOOTH over each valid 3x3 window (the model's depthwise convolution)."""
    h, w = z.shape[1] - 2, z.shape[2] - 2
    out = np.zeros((len(z), h, w, z.shape[3]), np.float64)
    for i in range(3):
        for j in range(3):
            out += SMOOTH[i, j] * z[:, i : i + h, j : j + w]
    return out


def prototypes(frames: np.ndarray) -> np.ndarray:
    """K x H x W x 3 float32 standardised prototypes of the empty class's unaugmented frames."""
    out: np.ndarray = scene.prototypes(standardise(frames).astype(np.float64)).astype(np.float32)
    return out


class Registration:
    """Each prototype's first-order move model. A frame z that is prototype Q moved by a small
    (dx, dy) that may vary across the frame, dx = a0 + a1 x + a2 y and dy = a3 + a4 x + a5 y (x, y
    in [-1, 1]: a shift, a slight turn or zoom), is z = Q - dx dQ/dx - dy dQ/dy to first order. The
    six a's are the least-squares fit of z - Q on the six maps dQ/dx, x dQ/dx, ..., y dQ/dy: a fixed
    6 x P matrix per prototype (`solve`), one fully connected layer in the model."""

    def __init__(self, protos: np.ndarray) -> None:
        q = smooth(protos.astype(np.float64))
        self.smoothed = q  # K x h x w x 3
        gx, gy = _gradients(q)
        k, h, w, _ = q.shape
        ys, xs = np.meshgrid(np.linspace(-1.0, 1.0, h), np.linspace(-1.0, 1.0, w), indexing="ij")
        self.coords = np.stack([np.ones((h, w)), xs, ys])  # 3 x h x w: the move's terms
        self.gradients = np.stack([gx, gy], axis=1)  # K x 2 x h x w x 3
        self.maps = (self.gradients[:, :, None] * self.coords[None, None, :, :, :, None]).reshape(k, 6, -1)  # K x 6 x P
        self.solve = np.stack([np.linalg.solve(m @ m.T, m) for m in self.maps])  # K x 6 x P: (M M^T)^-1 M

    def residual_sums(self, z: np.ndarray) -> np.ndarray:
        """N x K x h x w: sum over RGB of |residual| of standardised frames `z` against each prototype."""
        zs = smooth(z.astype(np.float64))
        out = np.empty((len(z), *self.smoothed.shape[:3]), np.float32)
        for k in range(len(self.smoothed)):
            r = (zs - self.smoothed[k]).reshape(len(z), -1)
            r -= (r @ self.solve[k].T) @ self.maps[k]
            out[:, k] = np.abs(r.reshape(zs.shape)).sum(axis=-1)
        return out


def _gradients(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Central differences along x and y (one-sided at the border: the edge repeated)."""
    p = np.pad(q, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    return (p[:, 1:-1, 2:] - p[:, 1:-1, :-2]) / 2.0, (p[:, 2:, 1:-1] - p[:, :-2, 1:-1]) / 2.0


def distances(frames: np.ndarray, protos: np.ndarray) -> np.ndarray:
    """N x K: each uint8 frame's largest box mean of the residual sum against each prototype."""
    registration = Registration(protos)
    out = np.empty((len(frames), len(protos)))
    for start in range(0, len(frames), BATCH):
        sums = registration.residual_sums(standardise(frames[start : start + BATCH]))
        out[start : start + BATCH] = _box_max(sums.reshape(-1, *sums.shape[2:])).reshape(len(sums), -1)
    return out


def score(frames: np.ndarray, protos: np.ndarray) -> np.ndarray:
    """N: the distance to the nearest prototype, what the model's linear layer reads."""
    out: np.ndarray = distances(frames, protos).min(axis=1)
    return out


def _box_max(d: np.ndarray) -> np.ndarray:
    """N: the largest BOX x BOX mean of each N x H x W map (valid positions; a fixed summing order)."""
    h, w = d.shape[1] - BOX + 1, d.shape[2] - BOX + 1
    total = np.zeros((len(d), h, w), np.float32)
    for i in range(BOX):
        for j in range(BOX):
            total += d[:, i : i + h, j : j + w]
    out: np.ndarray = total.max(axis=(1, 2)).astype(np.float64) / (BOX * BOX)
    return out


def moved(frames: np.ndarray, px: float = 1.0) -> np.ndarray:
    """The frames each slid by up to `px` in some direction (a fixed spread of sub-pixel shifts,
    bilinear): calibration views, so that int8 leaves the move terms the range a nudged camera needs."""
    from PIL import Image

    out = np.empty_like(frames)
    for i, frame in enumerate(frames):
        angle = 2.399963 * i  # the golden angle: shifts spread evenly over directions and sizes
        radius = px * np.sqrt((i % 7 + 1) / 7)
        dx, dy = radius * np.cos(angle), radius * np.sin(angle)
        img = Image.fromarray(frame).transform(frame.shape[1::-1], Image.Transform.AFFINE, (1, 0, dx, 0, 1, dy), Image.Resampling.BILINEAR)
        out[i] = np.asarray(img)
    return out
