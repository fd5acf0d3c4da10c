"""A tiny synthetic face-tube cache in the real cache's format (facecodec/training/data.py),
so that tests and smoke runs never need the real data.

Each "person" is a coloured ellipse head with eyes, irises, brows, nose and a mouth on a
textured background; a 33-point 3-D layout is turned by the clip's yaw and projected, so the
landmarks really follow the drawn features and yaw-based sampling has something to find.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

# 15 left points, their 15 mirror images, 3 on the midline: mirror permutation below
_LEFT = np.array([
    [-0.30, -0.20, 0.2], [-0.18, -0.22, 0.25], [-0.24, -0.26, 0.25], [-0.24, -0.16, 0.25],
    [-0.36, -0.36, 0.2], [-0.24, -0.40, 0.25], [-0.12, -0.36, 0.3],  # eye corners, lids, brow
    [-0.10, 0.12, 0.4], [-0.20, 0.30, 0.3], [-0.12, 0.36, 0.35], [-0.05, 0.26, 0.4],  # nose, mouth
    [-0.55, 0.00, 0.0], [-0.50, 0.30, 0.0], [-0.35, 0.50, 0.1], [-0.18, 0.60, 0.2],  # jaw
])
_MID = np.array([[0.0, 0.05, 0.55], [0.0, 0.25, 0.42], [0.0, 0.65, 0.25]])  # nose tip, lip, chin
LAYOUT = np.concatenate([_LEFT, _LEFT * [-1, 1, 1], _MID]).astype(np.float32)
FLIP_PERMUTATION = np.array(list(range(15, 30)) + list(range(15)) + [30, 31, 32])
_IRIS = np.array([[-0.24, -0.21, 0.28], [0.24, -0.21, 0.28]], dtype=np.float32)
_MOUTH = [8, 9, 10, 31, 25, 24, 23]  # indices of the drawn mouth polyline


def project(points: np.ndarray, yaw: float, mouth: float) -> np.ndarray:
    """Rotate the 3-D layout by ``yaw`` about the vertical axis, open the mouth, project."""
    p = points.copy()
    if len(p) == len(LAYOUT):
        p[[9, 24, 31], 1] += mouth  # lower-lip points move down
    x = p[:, 0] * np.cos(yaw) + p[:, 2] * np.sin(yaw)
    return np.stack([x, p[:, 1]], axis=1).astype(np.float32)


def _px(pts: np.ndarray, res: int) -> np.ndarray:
    """Tube coordinates (-1/+1 = outer pixel edges) -> nearest pixel index."""
    return np.rint((pts + 1.0) / 2.0 * res - 0.5).astype(np.int32)


def render(res: int, yaw: float, mouth: float, person: int, background: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> (RGB uint8 (res, res, 3), sup (33, 2), iris (2, 2)) for one frame."""
    rng = np.random.default_rng(person)
    skin = tuple(int(v) for v in rng.integers(120, 230, 3))
    hair = tuple(int(v) for v in rng.integers(0, 90, 3))
    img = background.copy()
    sup, iris = project(LAYOUT, yaw, mouth), project(_IRIS, yaw, 0.0)
    c = _px(np.array([[0.6 * np.sin(yaw) * 0.3, 0.0]]), res)[0]
    axes = (int(res * 0.30 * (0.85 + 0.15 * np.cos(yaw))), int(res * 0.38))
    cv2.ellipse(img, (int(c[0]), int(c[1] - res * 0.12)), (axes[0] + 4, axes[1] // 2), 0, 180,
                360, hair, -1)
    cv2.ellipse(img, (int(c[0]), int(c[1])), axes, 0, 0, 360, skin, -1)
    p = _px(sup, res)
    for eye in (range(0, 4), range(15, 19)):
        cv2.fillPoly(img, [p[list(eye)][[0, 2, 1, 3]]], (245, 245, 245))
    for brow in ([4, 5, 6], [19, 20, 21]):
        cv2.polylines(img, [p[brow]], False, hair, max(1, res // 64))
    for q in _px(iris, res):
        cv2.circle(img, (int(q[0]), int(q[1])), max(1, res // 40), (40, 30, 20), -1)
    cv2.polylines(img, [p[[7, 30, 22]]], False, (90, 60, 50), max(1, res // 96))
    cv2.fillPoly(img, [p[_MOUTH]], (150, 40, 50))
    return img, sup, iris


def write_synthetic_cache(root: Path, clips: int = 4, frames: int = 24, persons: int = 3,
                          val_clips: int = 1, still_clips: int = 1, seed: int = 0) -> Path:
    """Write ``clips`` clips (the last ``val_clips`` in split "val"; ``still_clips`` of the
    train clips barely turn, to exercise the sampling fallback) and return ``root``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    entries = []
    for k in range(clips):
        name = f"synth_{k:03d}"
        person = k % persons
        split = "val" if k >= clips - val_clips else "train"
        still = split == "train" and k < still_clips
        amp = 0.04 if still else rng.uniform(0.45, 0.7)
        phase = rng.uniform(0, 2 * np.pi)
        bg_rng = np.random.default_rng(1000 + person)
        base = bg_rng.integers(30, 220, 3)
        ramp = np.linspace(0.6, 1.2, 256)[:, None, None] * base[None, None, :]
        background = np.clip(ramp + bg_rng.normal(0, 12, (256, 256, 3)), 0, 255).astype(np.uint8)
        t = np.arange(frames)
        yaw = (amp * np.sin(2 * np.pi * t / frames + phase)).astype(np.float32)
        mouth = (0.06 * (1 + np.sin(t * 1.3 + k))).astype(np.float32)
        out = [render(256, float(yaw[i]), float(mouth[i]), person, background)
               for i in range(frames)]
        tube256 = np.stack([o[0] for o in out])
        tube128 = np.stack([cv2.resize(f, (128, 128), interpolation=cv2.INTER_AREA)
                            for f in tube256])
        valid = np.ones(frames, dtype=bool)
        valid[frames // 2] = False  # one dropped detection, as the real tracker has
        d = root / name
        d.mkdir(exist_ok=True)
        np.save(d / "tube256.npy", tube256)
        np.save(d / "tube128.npy", tube128)
        np.savez(
            d / "meta.npz",
            sup=np.stack([o[1] for o in out]), iris=np.stack([o[2] for o in out]),
            landmarks=np.zeros((frames, 478, 3), np.float32), yaw=yaw,
            pitch=np.zeros(frames, np.float32), roll=np.zeros(frames, np.float32), valid=valid,
            box=np.tile(np.array([[0.5, 0.5, 1.0]], np.float32), (frames, 1)),
            segment=np.zeros(frames, np.int32), eyes_open=np.ones(frames, np.float32))
        entries.append({"name": name, "split": split, "person": f"p{person}", "frames": frames,
                        "src_fps": 15.0})
    (root / "index.json").write_text(json.dumps({"version": 1, "fps": 15, "clips": entries},
                                                indent=1))
    return root
