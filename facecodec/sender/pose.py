"""Head pose (yaw, pitch, roll) and eye openness from MediaPipe's 3-D landmarks.

No model fit: two head axes are read off the landmarks (docs/environment.md; a generic
6-point ``solvePnP`` model was off by up to 0.4 rad on frontal clips, so it is not used).

- Left-right axis ``r``: mean of the unit vectors between 8 symmetric landmark pairs
  (cheeks, jaw, eye corners, mouth corners), from the subject's right to left side.
  Averaging pairs makes it insensitive to expression (a smile moves 61/291, not 234/454).
- Vertical axis ``u``: forehead (10) to chin (152), made orthogonal to ``r``.

Angles, in radians, in image coordinates (x right, y down, z away from the camera):

- ``yaw = asin(r_z)``: positive = face turned towards image right. Same definition as the
  ``yaw_min``/``yaw_max`` columns of shared/data/manifest.csv.
- ``pitch = asin(u_z) - PITCH_OFFSET``: positive = face tilted down (chin towards chest).
- ``roll = atan2(r_y, r_x)``: positive = head tilted clockwise on screen.

MediaPipe's depth is flattened (its z is learned from a weak-perspective model), so large
turns read smaller than they are; the angles are for selecting and conditioning, not for
metrology. docs/sender.md gives the measured agreement.
"""

from __future__ import annotations

import numpy as np

# (subject's right, subject's left) = (image left, image right) on an unmirrored camera.
LEFT_RIGHT_PAIRS: tuple[tuple[int, int], ...] = (
    (234, 454), (127, 356), (93, 323),  # cheeks
    (132, 361), (58, 288),              # jaw
    (33, 263), (133, 362),              # outer, inner eye corners
    (61, 291),                          # mouth corners
)
FOREHEAD, CHIN = 10, 152

# In MediaPipe's canonical face model (modules/face_geometry/data/canonical_face_model.obj)
# the chin vertex 152 (y -9.403, z 4.264) lies 0.217 units behind the forehead vertex 10
# (y 8.262, z 4.482): a frontal face has asin(u_z) = atan(0.217 / 17.665) = 0.0123 rad.
PITCH_OFFSET = 0.0123

# Eye openness: (upper lid, lower lid) of each eye.
_LIDS = ((159, 145), (386, 374))

def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def head_axes(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit left-right and vertical head axes of (..., 478, 3) landmarks -> (..., 3) each."""
    lm = np.asarray(landmarks, dtype=np.float64)
    a = np.array([p[0] for p in LEFT_RIGHT_PAIRS])
    b = np.array([p[1] for p in LEFT_RIGHT_PAIRS])
    r = _unit(_unit(lm[..., b, :] - lm[..., a, :]).mean(axis=-2))
    u = lm[..., CHIN, :] - lm[..., FOREHEAD, :]
    u = _unit(u - (u * r).sum(-1, keepdims=True) * r)
    return r, u


def head_pose(landmarks: np.ndarray) -> np.ndarray:
    """(yaw, pitch, roll) in radians of (..., 478, 3) landmarks -> (..., 3).

    Landmarks in any isotropic unit (pixels, or tube coordinates) with x right, y down and
    z away from the camera.
    """
    r, u = head_axes(landmarks)
    yaw = np.arcsin(np.clip(r[..., 2], -1.0, 1.0))
    pitch = np.arcsin(np.clip(u[..., 2], -1.0, 1.0)) - PITCH_OFFSET
    roll = np.arctan2(r[..., 1], r[..., 0])
    return np.stack([yaw, pitch, roll], axis=-1)


def eye_openness(landmarks: np.ndarray) -> np.ndarray:
    """Upper-lower lid distance, mean of both eyes, over the forehead-chin (10-152)
    distance, both in 3-D, for (..., 478, 3) landmarks -> (...).

    Both distances are vertical on the face, so turning the head does not change the ratio
    (a lid distance over the eye's width would: the width shrinks in profile; on a head
    turn clip that ratio tracked |yaw| with correlation 0.65, this one 0.14). Open eyes
    measure about 0.035-0.07 depending on the person, a blink below 0.02.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    lids = [np.linalg.norm(lm[..., up, :] - lm[..., lo, :], axis=-1) for up, lo in _LIDS]
    height = np.linalg.norm(lm[..., CHIN, :] - lm[..., FOREHEAD, :], axis=-1)
    return 0.5 * (lids[0] + lids[1]) / np.maximum(height, 1e-12)
