"""Synthetic face-tube-like frames for the eval tests (no third-party pictures needed)."""

from __future__ import annotations

import numpy as np


def textured_image(seed: int = 0, size: int = 256) -> np.ndarray:
    """(size, size, 3) uint8: smooth colour fields, a few hard-edged discs and fine texture,
    so that blur, shifts and compression all change it measurably."""
    import cv2

    rng = np.random.default_rng(seed)
    low = rng.random((8, 8, 3)).astype(np.float32)
    img = cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[:size, :size]
    for _ in range(6):
        cx, cy, r = rng.integers(30, size - 30, 2).tolist() + [int(rng.integers(10, 40))]
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = rng.random(3)
    fine = cv2.GaussianBlur(rng.random((size, size)).astype(np.float32), (0, 0), 1.0)
    img = img + 0.25 * (fine - fine.mean())[..., None]
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def moving_clip(frames: int = 20, size: int = 256, step: int = 2, seed: int = 0) -> np.ndarray:
    """(frames, size, size, 3) uint8: a textured image panning ``step`` px per frame."""
    big = textured_image(seed, size + step * frames)
    return np.stack([big[:size, k * step:k * step + size] for k in range(frames)])
