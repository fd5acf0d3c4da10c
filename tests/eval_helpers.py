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


def sender_meta(t: int, yaw: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-frame sender values as ``clip.meta`` holds them (clips.py / the cache's
    meta.npz), for synthetic frames: a centred face-ish landmark set, one tube segment."""
    rng = np.random.default_rng(0)
    sup = np.broadcast_to(rng.uniform(-0.5, 0.5, (1, 33, 2)), (t, 33, 2)).astype(np.float32)
    return {"sup": sup.copy(), "iris": np.zeros((t, 2, 2), np.float32),
            "landmarks": np.zeros((t, 478, 3), np.float32),
            "yaw": (np.linspace(-0.2, 0.3, t) if yaw is None else yaw).astype(np.float32),
            "pitch": np.zeros(t, np.float32), "roll": np.zeros(t, np.float32),
            "valid": np.ones(t, bool), "box": np.tile(np.float32([10, 20, 300]), (t, 1)),
            "segment": np.zeros(t, np.int32), "eyes_open": np.ones(t, np.float32)}


def eval_clip(frames: int = 8):
    """A few frames of a real val clip from the face-tube cache of ``prepare-data``
    (``$FACECODEC_DATA`` or ~/.cache/facecodec/data) when it is there, else a synthetic pan
    with plausible sender values, so that the model tests always run. Read in place:
    nothing of shared/data is copied anywhere."""
    from facecodec.eval.base import EvalClip
    from facecodec.eval.clips import manifest_clips
    from facecodec.sender.prepare import DEFAULT_MANIFEST, default_out

    if DEFAULT_MANIFEST.is_file():
        refs = [r for r in manifest_clips(DEFAULT_MANIFEST, "val", default_out())
                if r.cache_dir is not None]
        if refs:
            return refs[0].load(frames)
    pan = moving_clip(frames)
    return EvalClip("synthetic_pan", pan, meta=sender_meta(frames), origin="synthetic")
