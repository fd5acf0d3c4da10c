"""Part maps: the driving frame's eye and mouth openings drawn from its supervised
landmarks, for the decoder (``model.decoder.part_maps``, issue 19).

The shipped decoder ignores the driver's lids and lips: its blend mask takes ~97 % of each
pixel from the warped sources, which show open eyes, so a blink is never drawn
(docs/EXPRESSIONS.md). These maps put the lids and lips where the decoder can see them,
at the resolution of the features they are added to.

Per part (subject's right eye, left eye, mouth) two maps:

- **opening**: what lies between two half-ellipse arcs through the corners, one through
  each lid (inner lip): a major half-axis of half the corners' distance, along them, and
  minor half-axes the lids' offsets across that axis. With the lids symmetric about the
  corners' line this is the filled ellipse whose minor half-axis is half the lid gap; the
  arcs also follow an upper lid that arches more than the lower one, and the crescent of
  a smiling mouth whose inner lips both lie below its corners. Lids that meet (a closed
  eye or mouth) leave nothing between the arcs: an empty map.
- **region**: the ellipse on the corners with a minor half-axis of :data:`REGION_RATIO`
  times the major one, whatever the opening: where the part is. The decoder's new
  convolutions start at zero, and a zero input gives their weights no gradient: without
  it, a closed eye (an empty opening map) could not teach them anything.

The soft edge is the band between the arcs convolved across with a Gaussian of
:data:`EDGE_PIXELS` pixels (Phi((high - v) / s) + Phi((v - low) / s) - 1, Phi as a
logistic): exactly 0 for an empty band and ~1 inside a wide one, so a gap under a pixel
gives a faint line, not a full-strength one. Plain elementwise torch ops: they trace to
ONNX and Core ML as the rest of the decoder.
"""

from __future__ import annotations

import torch
from torch import Tensor

from facecodec.models.blocks import make_coordinate_grid

# Positions in the 33 supervised landmarks (facecodec.sender.landmarks.SUPERVISED_LANDMARKS,
# checked by a test): (corner, corner, upper lid / lip, lower lid / lip) of each part.
PARTS: tuple[tuple[int, int, int, int], ...] = (
    (13, 15, 14, 16),  # subject's right eye: corners 33 / 133, lids 159 / 145
    (17, 19, 18, 20),  # left eye: corners 362 / 263, lids 386 / 374
    (23, 27, 31, 32),  # mouth: corners 61 / 291, inner lips 13 / 14
)
PART_NAMES = ("right_eye", "left_eye", "mouth")
NUM_MAPS = 2 * len(PARTS)
"""Channels of :func:`part_maps`: the openings of the parts, then their regions."""

REGION_RATIO = 0.5
"""Minor over major half-axis of a region map (an open eye is ~0.3, a wide mouth more)."""

EDGE_PIXELS = 0.5
"""Standard deviation of the soft edge, in pixels of the map."""

_LOGISTIC = 1.702  # sigmoid(1.702 x) is within 0.01 of the normal CDF


def part_maps(sup: Tensor, h: int, w: int) -> Tensor:
    """(B, 33, 2) supervised landmarks in [-1, 1] (x right, y down, -1 / 1 on the outer
    pixel edges) -> (B, NUM_MAPS, h, w) maps in [0, 1]: openings then regions."""
    pts = sup[:, [i for part in PARTS for i in part]].reshape(sup.shape[0], len(PARTS), 4, 2)
    c1, c2, upper, lower = pts.unbind(dim=2)
    mid = 0.5 * (c1 + c2)
    axis = c2 - c1
    half = 0.5 * axis.norm(dim=-1).clamp(min=1e-6)  # (B, P) semi-major axis
    along = axis / (2 * half).unsqueeze(-1)
    across = torch.stack([-along[..., 1], along[..., 0]], dim=-1)
    # the lids' (lips') offsets across the axis: the arcs through the corners and each
    upper_t = ((upper - mid) * across).sum(-1)
    lower_t = ((lower - mid) * across).sum(-1)
    low, high = torch.minimum(upper_t, lower_t), torch.maximum(upper_t, lower_t)
    grid = make_coordinate_grid(h, w, sup).reshape(1, 1, h * w, 2)
    rel = grid - mid.unsqueeze(2)  # (B, P, hw, 2)
    u = (rel * along.unsqueeze(2)).sum(-1)
    v = (rel * across.unsqueeze(2)).sum(-1)
    # an arc's offset at u, per unit of its offset at the middle (a half-ellipse)
    profile = (1.0 - (u / half.unsqueeze(-1)) ** 2).clamp(min=0.0).sqrt()
    k = _LOGISTIC * h / (2.0 * EDGE_PIXELS)  # 1 / sigma in [-1, 1] units, logistic scale
    opening = _blurred_band(low.unsqueeze(-1) * profile, high.unsqueeze(-1) * profile, v, k)
    reach = REGION_RATIO * half.unsqueeze(-1) * profile
    region = _blurred_band(-reach, reach, v, k)
    maps = torch.cat([opening, region], dim=1)  # (B, 2P, hw)
    return maps.reshape(sup.shape[0], NUM_MAPS, h, w)


def _blurred_band(low: Tensor, high: Tensor, v: Tensor, k: float) -> Tensor:
    """The band low <= v <= high blurred across v: 0 where it is empty, ~1 deep inside."""
    inside = torch.sigmoid(k * (high - v)) + torch.sigmoid(k * (v - low)) - 1.0
    return inside.clamp(min=0.0)
