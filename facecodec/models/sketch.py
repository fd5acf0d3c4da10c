"""The landmark sketch: a frame's supervised landmarks drawn as lines, the input of the
few-shot talking-heads generator and embedder (Zakharov et al. 2019, section 3.1: "facial
landmarks ... rasterized into a 3-channel image ... connecting landmarks with line
segments of different colours").

Our tracker gives 33 points (facecodec.sender.landmarks.SUPERVISED_GROUPS), not the 68 of
the paper, and the 2 iris centres. Each part gets its own channel instead of a colour, so
that the networks need not separate colours: the jaw line, the brows, the eye outlines, the
nose, the outer lips, the inner lips (the mouth's opening), and the irises as dots. A line
is exp(-d^2 / 2 s^2) of the distance d to its segment, ``s`` in pixels of the sketch: plain
elementwise torch ops, so the sketch is drawn inside the exported graph from the 70
transmitted numbers, as the part maps are (facecodec/models/part_maps.py).
"""

from __future__ import annotations

import torch
from torch import Tensor

from facecodec.models.blocks import make_coordinate_grid

# Positions in the 33 supervised landmarks (SUPERVISED_LANDMARKS order, checked by a test):
# jaw 0-6, brows 7-12, eyes 13-20 (corner, upper lid, corner, lower lid per eye), nose
# 21-22, mouth 23-32 (outer: corners 23 / 27, upper 24-26, lower 28-30; inner lips 31 / 32).
CHAINS: tuple[tuple[int, ...], ...] = (
    (0, 1, 2, 3, 4, 5, 6),  # jaw
    (7, 8, 9), (10, 11, 12),  # brows
    (13, 14, 15, 16, 13), (17, 18, 19, 20, 17),  # eye outlines
    (21, 22),  # nose
    (23, 24, 25, 26, 27, 30, 29, 28, 23),  # outer lips
    (23, 31, 27, 32, 23),  # inner lips
)
CHANNEL_OF_CHAIN = (0, 1, 1, 2, 2, 3, 4, 5)
"""The sketch channel of each chain: jaw, brows, eyes, nose, outer lips, inner lips."""
IRIS_CHANNEL = 6
NUM_CHANNELS = 7

SEGMENTS: tuple[tuple[int, int, int], ...] = tuple(
    (a, b, ch) for chain, ch in zip(CHAINS, CHANNEL_OF_CHAIN, strict=True)
    for a, b in zip(chain[:-1], chain[1:], strict=True))
"""(start point, end point, channel) of every line segment."""
_CHANNEL_SEGMENTS = tuple(tuple(i for i, seg in enumerate(SEGMENTS) if seg[2] == ch)
                          for ch in range(IRIS_CHANNEL))


def landmark_sketch(sup: Tensor, iris: Tensor | None, size: int, sigma: float = 1.0) -> Tensor:
    """(B, 33, 2) landmarks and (B, 2, 2) iris centres in [-1, 1] -> (B, NUM_CHANNELS,
    size, size) sketch in [0, 1]; ``sigma``: the lines' half-width in sketch pixels."""
    b = sup.shape[0]
    a_idx = torch.tensor([s[0] for s in SEGMENTS], device=sup.device)
    b_idx = torch.tensor([s[1] for s in SEGMENTS], device=sup.device)
    p, q = sup[:, a_idx].unsqueeze(2), sup[:, b_idx].unsqueeze(2)  # (B, S, 1, 2)
    grid = make_coordinate_grid(size, size, sup).reshape(1, 1, size * size, 2)
    gx, gy = grid[..., 0], grid[..., 1]  # (1, 1, HW)
    # x and y apart: no (B, S, HW, 2) tensors (this runs on 24 frames per training step)
    sx, sy = q[..., 0] - p[..., 0], q[..., 1] - p[..., 1]  # (B, S, 1)
    rx, ry = gx - p[..., 0], gy - p[..., 1]  # (B, S, HW)
    t = ((rx * sx + ry * sy) / (sx * sx + sy * sy).clamp(min=1e-8)).clamp(0.0, 1.0)
    d2 = (rx - t * sx) ** 2 + (ry - t * sy) ** 2  # (B, S, HW) squared distance to the segment
    s = 2.0 * sigma / size  # pixels -> [-1, 1] units
    # each channel: its nearest segment (a max of the lines, so that crossings stay at 1)
    near = torch.stack([d2[:, list(idx)].amin(dim=1) for idx in _CHANNEL_SEGMENTS], dim=1)
    maps = torch.exp(-near / (2 * s * s))  # (B, C - 1, HW)
    if iris is not None:
        d2i = (gx - iris[..., :1]) ** 2 + (gy - iris[..., 1:]) ** 2  # (B, 2, HW)
        dots = torch.exp(-d2i / (2 * (2 * s) ** 2)).amax(dim=1)
        maps = torch.cat([maps, dots.unsqueeze(1)], dim=1)
    else:
        maps = torch.cat([maps, torch.zeros_like(maps[:, :1])], dim=1)
    return maps.reshape(b, NUM_CHANNELS, size, size)
