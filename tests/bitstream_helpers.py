"""Shared builders for the bitstream tests: stream tables and plausible value sequences."""

from __future__ import annotations

import numpy as np

from facecodec.bitstream.streams import StreamTable


def random_walk(table: StreamTable, frames: int, seed: int = 0, step: float = 0.01
                ) -> list[dict[str, np.ndarray]]:
    """Smooth random motion inside each stream's range: what trackers produce."""
    rng = np.random.default_rng(seed)
    out = []
    state = {s.name: rng.uniform(s.lo * 0.5 + s.hi * 0.5 - (s.hi - s.lo) * 0.2,
                                 s.lo * 0.5 + s.hi * 0.5 + (s.hi - s.lo) * 0.2, s.count)
             for s in table}
    vel = {s.name: np.zeros(s.count) for s in table}
    for _ in range(frames):
        frame = {}
        for s in table:
            vel[s.name] = 0.8 * vel[s.name] + step * (s.hi - s.lo) * rng.standard_normal(s.count)
            state[s.name] = np.clip(state[s.name] + vel[s.name], s.lo, s.hi)
            frame[s.name] = state[s.name].copy()
        out.append(frame)
    return out


def as_clip(table: StreamTable, frames: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Frames -> (T, count) arrays per stream (a value file's layout)."""
    return {s.name: np.stack([f[s.name] for f in frames]) for s in table}
