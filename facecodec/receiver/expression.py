"""Eyelids and lips where the stream says they are: a landmark-driven touch-up of each frame.

The generator draws nearly every pixel of the eyes and the mouth from warped source
pixels (its blend mask is close to 1 there), so a blink or a mouth opening that no source
shows does not appear, although the decoded landmarks still carry them (the figures, stage
by stage: docs/EXPRESSIONS.md). The receiver knows both ends of that gap: where the stream puts
the lids and lips (the decoded supervised landmarks 159/145, 386/374, 13/14 and 61/291) and where
the generator drew them (MediaPipe's face mesh on the rendered frame, the sender's own
tracker). This module moves the drawn ones to the transmitted gaps with a local warp:

- **Eyes.** Each eye is modelled by two elliptic arcs through its corners; the lower lid
  stays where it was drawn and the upper lid moves to the transmitted gap. Closing is an
  occlusion: the part of the eye below the new lid line is left as drawn, and the lid's
  skin slides down over the rest (``_band_map``; taken from above the drawn lashes and
  crease, which an open eye folds away), with a lash line drawn along the lid's edge as
  it closes. An eye opened wider than drawn is stretched (at most :data:`MAX_STRETCH`).
- **Mouth.** The same for the inner lips: the upper lip stays, the lower lip moves as a
  whole to the transmitted gap and the skin below it is squeezed or stretched, fading out
  towards the chin. What lies between the lips (teeth, the dark of the mouth) is squeezed
  or stretched rather than covered: the lips' corners would tear at an occlusion edge.
  A mouth opened wider than its drawn gap can explain (drawn shut, a stretch of the lips'
  seam is still lips, and the face mesh reads it shut) gets its inside painted in a dark
  red taken from the lips' colour, in proportion to the share of the gap that is new.
  Then the mouth's width (61/291: a smile widens it) is moved to the transmitted one by
  stretching or squeezing the lips along their axis, fading out into the cheeks
  (``_width_map``).

Gaps are compared in outer-eye-corner units (the drawn face and the transmitted one have
the same pose but may differ in scale by a few pixels); a change below
:data:`MIN_CHANGE` is left alone. A frame where the mesh finds no face, or finds it away
from where the stream puts it, is shown as drawn. The warp is one ``cv2.remap`` per
feature, restricted to a box around it. bench/expression_retouch.py measures what it
gains and costs; the results are in docs/EXPRESSIONS.md.

This does not replace a generator that draws expressions itself (issue 19); it corrects
what the generator draws with the information the receiver already has.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from facecodec.sender.landmarks import SUPERVISED_LANDMARKS, FaceTracker

_SUP = {idx: i for i, idx in enumerate(SUPERVISED_LANDMARKS)}

# (outer corner, inner corner, fixed lid, moving lid) per eye: subject's right, then left
EYES = ((33, 133, 145, 159), (263, 362, 374, 386))
# (corner, corner, fixed lip, moving lip): the upper inner lip stays, the lower one moves
MOUTH = (61, 291, 13, 14)
OUTER_EYE_CORNERS = (33, 263)

MAX_STRETCH = 1.5
"""An eye opened wider than drawn is stretched by at most this factor (a warp cannot draw
more iris than the frame shows)."""

LASH_WIDTH = 0.04
"""The painted lash line's half-width, in eye widths."""

MIN_CHANGE = 0.01
"""Gap changes below this share of the outer-eye-corner distance are left alone: about
the face mesh's jitter on a rendered frame."""

WIDTH_REACH = 0.5
"""The width change fades out over this many mouth widths beyond each corner."""

WIDTH_BAND = 0.45
"""... and over this many mouth widths across the lips (above and below them)."""

CLOSE_BIAS = 0.005
"""A closing lid is drawn this much lower (in outer-eye-corner distances): the face mesh
reads a lid closed by this warp about that much more open than it was drawn, and the
sender measured the original's lids with the same mesh (the measurement:
docs/EXPRESSIONS.md, "The fix so far")."""

CAVITY_SHADE = np.array([0.2, 0.12, 0.12])
"""A mouth opened beyond its drawn gap shows its inside as the lips' colour times this
(per RGB channel: a dark red)."""

LIP_SAMPLE = 0.06
"""The lips' colour is sampled this far (in mouth widths) beyond the inner lip points."""

MAX_OFFSET = 0.5
"""A face mesh whose eye corners lie farther than this (in outer-eye-corner distances)
from the transmitted ones found something else: the frame is shown as drawn."""


@dataclass(frozen=True)
class Feature:
    """One eye or the mouth: which points, how far the warp reaches beyond the moving lid
    (``reach``, in widths of the feature), how far beyond the corners (``spread``)."""

    corners: tuple[int, int]
    fixed: int
    moving: int
    reach: float
    rigid: float  # the band beyond the moving lid that moves as a whole, in widths
    spread: float
    profile: float = 1.0  # the arc (1 - s^2)^profile across the feature
    skip: float = 0.0  # a closed lid's skin starts this far beyond the drawn lid (widths)
    lash: float = 0.0  # how dark the lash line of a fully closed lid is drawn (0..1)
    stretch: float = MAX_STRETCH  # an opening is stretched by at most this factor
    cavity: float = 0.0  # how dark the part of an opening no drawn gap explains is painted


FEATURES = (
    Feature(EYES[0][:2], EYES[0][2], EYES[0][3], reach=0.6, rigid=0.0, spread=1.05,
            profile=0.5, skip=0.15, lash=0.5),
    Feature(EYES[1][:2], EYES[1][2], EYES[1][3], reach=0.6, rigid=0.0, spread=1.05,
            profile=0.5, skip=0.15, lash=0.5),
    # a mouth opens to any transmitted gap: what a stretch of the drawn gap cannot show is
    # painted as its dark inside
    Feature(MOUTH[:2], MOUTH[2], MOUTH[3], reach=0.6, rigid=0.2, spread=1.25,
            profile=2.0, stretch=float("inf"), cavity=1.0),
)


def sup_pixels(sup: np.ndarray, size: int) -> dict[int, np.ndarray]:
    """Decoded supervised landmarks (33 x 2 in tube coordinates, [-1, 1]) -> {mesh index:
    (x, y) pixel of a ``size`` frame}."""
    p = (np.asarray(sup, dtype=np.float64).reshape(-1, 2) + 1.0) * (0.5 * size)
    return {idx: p[i] for idx, i in _SUP.items()}


def _band_map(z: np.ndarray, k: np.ndarray, drawn: float, target: float, rigid: float,
              skip: float, top: float, occlude: bool) -> np.ndarray:
    """Backward map of the height ``z`` above the fixed lid (output -> drawn frame) at
    points whose arc factor is ``k`` (1 mid-feature, 0 at the corners): the moving lid,
    drawn at ``drawn * k``, appears at ``target * k`` with the band of ``rigid * k`` beyond
    it (a lip) moved as a whole; the skin from there to ``top`` is stretched or squeezed
    to fill, starting ``skip * k`` further out (a closing lid shows its skin, not the
    lashes and crease of the open eye); nothing moves at or beyond ``top`` or below the
    fixed lid. ``occlude``: a closing lid covers the gap (an eye), else the gap is
    squeezed."""
    d, t, r = drawn * k, target * k, rigid * k
    out = z.copy()
    inside = (z > 0) & (z < top)
    gap = inside & (z <= t)
    # within the new gap: stretched when opening; when closing, as drawn if the lid covers
    # it (an eye), else squeezed (lips: an occlusion edge would tear their corners)
    ratio = d[gap] / np.maximum(t[gap], 1e-6)
    out[gap] = z[gap] * (np.minimum(1.0, ratio) if occlude else ratio)
    lid = inside & (z > t) & (z <= t + r)
    out[lid] = z[lid] + (d[lid] - t[lid])
    skin = inside & (z > t + r)
    a, b = t[skin] + r[skin], d[skin] + r[skin] + skip * k[skin]
    out[skin] = b + (z[skin] - a) * (top - b) / np.maximum(top - a, 1e-6)
    return out


def _feature_map(f: Feature, drawn: dict[int, np.ndarray], target_gap: float,
                 xs: np.ndarray, ys: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The backward map (x, y) of one feature on the pixel grid, the darkening (0..1) of a
    closing lid's lash line and the opacity (0..1) of a newly opened mouth's inside."""
    a, b = drawn[f.corners[0]], drawn[f.corners[1]]
    mid, axis = 0.5 * (a + b), b - a
    width = float(np.linalg.norm(axis))
    e = axis / width
    n = np.array([-e[1], e[0]])
    if np.dot(drawn[f.moving] - drawn[f.fixed], n) < 0:
        n = -n  # n points from the fixed lid towards the moving one
    s = ((xs - mid[0]) * e[0] + (ys - mid[1]) * e[1]) / (0.5 * width * f.spread)
    k = np.clip(1.0 - s * s, 0.0, None) ** f.profile
    # height above the fixed lid's arc (through the corners, its middle at the fixed point)
    h = (xs - mid[0]) * n[0] + (ys - mid[1]) * n[1]
    base = float(np.dot(drawn[f.fixed] - mid, n))
    z = h - base * k
    gap = max(float(np.dot(drawn[f.moving] - drawn[f.fixed], n)), 0.0)
    target = min(max(target_gap, 0.0), f.stretch * max(gap, 1.0))
    closure = max(0.0, 1.0 - target / gap) if gap > 0 else 0.0
    top = max(gap, target) + (f.reach + f.rigid + f.skip) * width
    z2 = _band_map(z, k, gap, target, f.rigid * width, closure * f.skip * width, top,
                    occlude=f.skip > 0)
    dz = z2 - z
    sigma = LASH_WIDTH * width
    lash = (f.lash * closure * (k > 0)) * np.exp(-(((z - target * k) / sigma) ** 2))
    # an opening the drawn gap cannot explain: a stretched closed mouth is still lips, so
    # the share of the new gap that is new is painted as the mouth's dark inside, fading
    # towards both lips and the corners
    opening = max(0.0, 1.0 - gap / target) if target > 0 else 0.0
    cavity = np.zeros_like(z)
    if f.cavity > 0 and opening > 0:
        t = target * k
        inside = (z > 0) & (z < t)
        u = np.where(inside, z / np.maximum(t, 1e-6), 0.0)
        cavity = f.cavity * opening * np.sin(np.pi * u) ** 0.5 * np.minimum(1.0, t / 2.0)
    return xs + dz * n[0], ys + dz * n[1], lash, cavity


def _width_map(a: np.ndarray, b: np.ndarray, target: float, xs: np.ndarray, ys: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """The backward map that moves the mouth corners ``a`` and ``b`` (as drawn) apart or
    together to ``target`` pixels: the lips are stretched or squeezed along their axis,
    the cheeks beyond the corners squeezed or stretched to fill out to
    :data:`WIDTH_REACH` widths, and the change fades out across the axis (nose, chin)."""
    mid, axis = 0.5 * (a + b), b - a
    width = float(np.linalg.norm(axis))
    e = axis / width
    u = (xs - mid[0]) * e[0] + (ys - mid[1]) * e[1]
    v = -(xs - mid[0]) * e[1] + (ys - mid[1]) * e[0]
    hd, ht = 0.5 * width, 0.5 * target
    reach = hd + WIDTH_REACH * width
    au = np.abs(u)
    src = np.where(au <= ht, au * hd / ht,
                   np.where(au < reach, hd + (au - ht) * (reach - hd) / (reach - ht), au))
    band = WIDTH_BAND * width
    fade = np.where(np.abs(v) < band, np.cos(0.5 * np.pi * v / band) ** 2, 0.0)
    du = (np.sign(u) * src - u) * fade
    return xs + du * e[0], ys + du * e[1]


def _lip_colour(image: np.ndarray, drawn: dict[int, np.ndarray], f: Feature) -> np.ndarray:
    """Mean RGB of the drawn lips: 3x3 pixels a little beyond the fixed and the moving
    point, away from the gap between them (which a closed mouth draws as a dark line)."""
    h, w = image.shape[:2]
    a, b = drawn[f.fixed], drawn[f.moving]
    width = float(np.linalg.norm(drawn[f.corners[1]] - drawn[f.corners[0]]))
    d = b - a
    n = d / max(float(np.linalg.norm(d)), 1e-6)
    if np.linalg.norm(d) < 1e-3:  # closed: across the corners' axis
        e = (drawn[f.corners[1]] - drawn[f.corners[0]]) / max(width, 1e-6)
        n = np.array([-e[1], e[0]])
    out = []
    for p in (a - LIP_SAMPLE * width * n, b + LIP_SAMPLE * width * n):
        x, y = np.clip(np.rint(p).astype(int), 1, (w - 2, h - 2))
        out.append(image[y - 1:y + 2, x - 1:x + 2].reshape(-1, 3).mean(0))
    return np.mean(out, axis=0)


def _gap(points: dict[int, np.ndarray], f: Feature) -> float:
    return float(np.linalg.norm(points[f.moving] - points[f.fixed]))


def _scale(points: dict[int, np.ndarray]) -> float:
    a, b = OUTER_EYE_CORNERS
    return float(np.linalg.norm(points[a] - points[b]))


def retouch(image: np.ndarray, drawn_mesh: np.ndarray | None, sup: np.ndarray) -> np.ndarray:
    """Move the lids and lips of ``image`` (H x W x 3 uint8, square) from where they are
    drawn (``drawn_mesh``: MediaPipe points of ``image`` in pixels, (>=468, 2); None: no
    face found, the image is returned as is) to where the decoded supervised landmarks
    ``sup`` put them."""
    if drawn_mesh is None:
        return image
    size = image.shape[0]
    want = sup_pixels(sup, size)
    drawn = {i: np.asarray(drawn_mesh[i, :2], dtype=np.float64) for i in _SUP}
    scale_drawn, scale_want = _scale(drawn), _scale(want)
    if scale_drawn < 4 or scale_want < 4:
        return image
    a, b = OUTER_EYE_CORNERS
    if np.linalg.norm(drawn[a] + drawn[b] - want[a] - want[b]) / 2 > MAX_OFFSET * scale_want:
        return image
    out = image
    for f in FEATURES:
        gap = _gap(drawn, f)
        target = _gap(want, f) / scale_want * scale_drawn
        if abs(target - gap) < MIN_CHANGE * scale_drawn:
            continue
        if target < gap:
            target = max(0.0, target - CLOSE_BIAS * scale_drawn)
        # the pixels the warp can touch: the feature's box, grown by its reach
        pts = np.stack([drawn[f.corners[0]], drawn[f.corners[1]], drawn[f.fixed],
                        drawn[f.moving]])
        width = float(np.linalg.norm(pts[1] - pts[0]))
        pad = (f.reach + f.rigid + f.skip + 0.15) * width + abs(target - gap)
        x0, y0 = np.floor(pts.min(0) - pad).astype(int)
        x1, y1 = np.ceil(pts.max(0) + pad).astype(int)
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(x1, image.shape[1] - 1), min(y1, image.shape[0] - 1)
        if x1 <= x0 or y1 <= y0:
            continue
        ys, xs = np.mgrid[y0:y1 + 1, x0:x1 + 1].astype(np.float64)
        mx, my, lash, cavity = _feature_map(f, drawn, target, xs, ys)
        patch = cv2.remap(out, mx.astype(np.float32), my.astype(np.float32),
                          interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        if lash.max() > 0:
            patch = np.clip(patch * (1.0 - lash[..., None]) + 0.5, 0, 255).astype(np.uint8)
        if cavity.max() > 0:
            shade = CAVITY_SHADE * _lip_colour(image, drawn, f)
            a = cavity[..., None]
            patch = np.clip(patch * (1.0 - a) + shade * a + 0.5, 0, 255).astype(np.uint8)
        if out is image:
            out = image.copy()
        out[y0:y1 + 1, x0:x1 + 1] = patch
    return _retouch_width(out, image, drawn, want, scale_drawn, scale_want)


def _retouch_width(out: np.ndarray, image: np.ndarray, drawn: dict[int, np.ndarray],
                   want: dict[int, np.ndarray], scale_drawn: float, scale_want: float
                   ) -> np.ndarray:
    """The mouth's width (a smile widens it) to the transmitted one (:func:`_width_map`)."""
    a, b = drawn[MOUTH[0]], drawn[MOUTH[1]]
    width = float(np.linalg.norm(b - a))
    target = float(np.linalg.norm(want[MOUTH[1]] - want[MOUTH[0]])) / scale_want * scale_drawn
    if width < 4 or abs(target - width) < MIN_CHANGE * scale_drawn:
        return out
    target = float(np.clip(target, width / MAX_STRETCH, width * MAX_STRETCH))
    pad = (WIDTH_REACH + 0.1) * width + abs(target - width)
    lo = np.floor(np.minimum(a, b) - pad).astype(int)
    hi = np.ceil(np.maximum(a, b) + pad).astype(int)
    x0, y0 = max(lo[0], 0), max(lo[1], 0)
    x1, y1 = min(hi[0], out.shape[1] - 1), min(hi[1], out.shape[0] - 1)
    if x1 <= x0 or y1 <= y0:
        return out
    ys, xs = np.mgrid[y0:y1 + 1, x0:x1 + 1].astype(np.float64)
    mx, my = _width_map(a, b, target, xs, ys)
    patch = cv2.remap(out, mx.astype(np.float32), my.astype(np.float32),
                      interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if out is image:
        out = image.copy()
    out[y0:y1 + 1, x0:x1 + 1] = patch
    return out


def touch_up_id() -> str:
    """A short hash of this module's code: what ``facecodec eval`` records of the touch-up,
    so that scores made with an older version are not reused (eval/reuse.py)."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]


class Retoucher:
    """:func:`retouch` with the face mesh run on each rendered frame. The mesh runs in
    static mode (its detector on every frame, ~2 ms more than tracking): each frame's
    touch-up then depends on that frame alone, so a receiver that held frames after a loss
    shows exactly the loss-free pictures once it recovers."""

    def __init__(self) -> None:
        self._tracker = None

    def load(self) -> None:
        """Start the face mesh now (~1.5 s) rather than on the first frame."""
        if self._tracker is None:
            self._tracker = FaceTracker(max_num_faces=1, static_image_mode=True)

    def __call__(self, image: np.ndarray, sup: np.ndarray) -> np.ndarray:
        self.load()
        faces = self._tracker(np.ascontiguousarray(image))
        return retouch(image, faces[0][:, :2] if faces else None, sup)

    def close(self) -> None:
        if self._tracker is not None:
            self._tracker.close()
            self._tracker = None
