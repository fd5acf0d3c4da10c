"""The receiver's lid and lip touch-up (facecodec/receiver/expression.py) on synthetic faces:
a drawn eye or mouth is moved to the gap the landmarks give, and nothing else changes."""

from __future__ import annotations

import numpy as np
import pytest

from facecodec.receiver.expression import (
    EYES,
    MOUTH,
    _band_map,
    retouch,
    sup_pixels,
)
from facecodec.sender.landmarks import SUPERVISED_LANDMARKS

SIZE = 128
SKIN = (200, 160, 140)


def face(eye_gap: float = 10.0, mouth_gap: float = 0.0):
    """A flat skin-coloured face with two dark eyes (filled ellipses between the lids) and
    a dark mouth gap; returns (image, mesh points (468, 2) where the eyes and mouth are)."""
    import cv2

    img = np.zeros((SIZE, SIZE, 3), np.uint8)
    img[:] = SKIN
    mesh = np.full((468, 2), np.nan)
    for (outer, inner, lower, upper), cx in zip(EYES, (40, 88), strict=True):
        mesh[outer], mesh[inner] = (cx - 14, 50), (cx + 14, 50)
        mesh[lower], mesh[upper] = (cx, 50 + eye_gap / 2), (cx, 50 - eye_gap / 2)
        if eye_gap > 0:
            cv2.ellipse(img, (cx, 50), (13, int(eye_gap / 2)), 0, 0, 360, (30, 20, 20), -1)
    left, right, top, bottom = MOUTH
    mesh[left], mesh[right] = (44, 95), (84, 95)
    mesh[top], mesh[bottom] = (64, 95 - mouth_gap / 2), (64, 95 + mouth_gap / 2)
    if mouth_gap > 0:
        cv2.ellipse(img, (64, 95), (19, int(mouth_gap / 2)), 0, 0, 360, (40, 10, 10), -1)
    # the rest of the supervised points somewhere on the face (unused by the touch-up)
    for i in SUPERVISED_LANDMARKS:
        if np.isnan(mesh[i]).any():
            mesh[i] = (64, 70)
    return img, mesh


def to_sup(mesh: np.ndarray, size: int = SIZE) -> np.ndarray:
    """Mesh pixels -> the stream's supervised landmarks (33 x 2, tube coordinates)."""
    return (mesh[list(SUPERVISED_LANDMARKS)] / (0.5 * size) - 1.0).astype(np.float32)


def dark(img: np.ndarray, box: tuple[int, int, int, int]) -> int:
    x0, y0, x1, y1 = box
    return int((img[y0:y1, x0:x1].mean(axis=-1) < 100).sum())


def test_sup_pixels_inverts_the_tube_coordinates():
    _, mesh = face()
    back = sup_pixels(to_sup(mesh), SIZE)
    assert np.allclose(back[33], mesh[33], atol=1e-4)


def test_where_the_stream_agrees_nothing_changes():
    img, mesh = face(eye_gap=10, mouth_gap=8)
    out = retouch(img, mesh, to_sup(mesh))
    assert np.array_equal(out, img)


def test_no_face_found_leaves_the_frame_as_drawn():
    img, mesh = face()
    assert retouch(img, None, to_sup(mesh)) is img


def test_a_blink_closes_the_drawn_eye_and_touches_nothing_else():
    img, mesh = face(eye_gap=10)
    _, shut = face(eye_gap=0)
    out = retouch(img, mesh, to_sup(shut))
    for cx in (40, 88):
        eye = (cx - 13, 44, cx + 14, 57)
        # the open eye was ~2 x 13 x 5 x pi dark pixels; a closed one is a lash line
        assert dark(img, eye) > 150
        assert dark(out, eye) < 0.25 * dark(img, eye)
    # the mouth and the face away from the eyes are untouched
    assert np.array_equal(out[70:], img[70:])
    assert np.array_equal(out[:, 60:68], img[:, 60:68])


def test_a_half_closed_eye_keeps_its_lower_half():
    img, mesh = face(eye_gap=12)
    _, half = face(eye_gap=6)
    out = retouch(img, mesh, to_sup(half))
    eye = (40 - 13, 40, 40 + 14, 60)
    assert 0.3 * dark(img, eye) < dark(out, eye) < 0.8 * dark(img, eye)
    # the lower lid stays where it was drawn: the bottom row of the eye is still dark
    assert dark(out, (36, 53, 45, 56)) > 0


def test_the_mouth_opens_and_closes_to_the_transmitted_gap():
    img, mesh = face(eye_gap=10, mouth_gap=12)
    _, closed = face(eye_gap=10, mouth_gap=0)
    out = retouch(img, mesh, to_sup(closed))
    mouth = (40, 84, 90, 108)
    # an elliptic gap keeps a little at its corners: the lips' arc is (1 - s^2)^2, narrower,
    # so that the corners never tear
    assert dark(out, mouth) < 0.3 * dark(img, mouth)
    assert np.array_equal(out[:70], img[:70])  # the eyes did not move

    img, mesh = face(eye_gap=10, mouth_gap=6)
    _, wide = face(eye_gap=10, mouth_gap=9)
    out = retouch(img, mesh, to_sup(wide))
    assert dark(out, mouth) > 1.2 * dark(img, mouth)


def test_the_same_face_at_another_scale_is_compared_in_eye_corner_units():
    # the stream's face is 10 % larger than the drawn one, with the same openness: no change
    img, mesh = face(eye_gap=10, mouth_gap=8)
    centre = np.array([64, 70])
    bigger = centre + 1.1 * (mesh - centre)
    assert np.array_equal(retouch(img, mesh, to_sup(bigger)), img)


@pytest.mark.parametrize("occlude", [True, False])
def test_band_map_keeps_the_fixed_lid_and_the_top(occlude):
    z = np.linspace(-5, 30, 701)
    k = np.ones_like(z)
    for drawn, target in ((8.0, 2.0), (8.0, 0.0), (4.0, 6.0)):
        src = _band_map(z, k, drawn, target, rigid=1.0, skip=0.5 if occlude else 0.0,
                        top=20.0, occlude=occlude)
        assert np.array_equal(src[z <= 0], z[z <= 0])  # below the fixed lid: untouched
        assert np.array_equal(src[z >= 20], z[z >= 20])  # beyond the reach: untouched
        above = z > target
        assert np.all(np.diff(src[above]) >= 0)  # the skin keeps its order
        # the moving lid drawn at `drawn` is shown just beyond `target` (the rigid band)
        i = np.argmax(z > target)
        assert src[i] == pytest.approx(drawn + z[i] - target)


def test_a_mesh_found_away_from_the_transmitted_face_is_ignored():
    img, mesh = face(eye_gap=10)
    _, shut = face(eye_gap=0)
    assert np.array_equal(retouch(img, mesh + [60.0, 0.0], to_sup(shut)), img)


def test_a_wider_mouth_is_drawn_wider_and_the_eyes_stay():
    img, mesh = face(eye_gap=10, mouth_gap=8)
    _, wide = face(eye_gap=10, mouth_gap=8)
    left, right = MOUTH[0], MOUTH[1]
    wide[left] -= (4.0, 0.0)
    wide[right] += (4.0, 0.0)  # 40 -> 48 px wide
    out = retouch(img, mesh, to_sup(wide))
    row = out[95].mean(axis=-1) < 100
    before = img[95].mean(axis=-1) < 100
    assert row.sum() >= before.sum() + 5  # the dark gap spans more of its row
    assert np.array_equal(out[:70], img[:70])


def test_a_mouth_drawn_shut_opens_with_a_dark_red_inside():
    # the generator drew the lips together; the stream says open: a stretch of the lips'
    # seam would still be lips, so the new gap is painted as the mouth's inside
    img, mesh = face(eye_gap=10, mouth_gap=0)
    img[60:] = (190, 110, 110)  # lips-and-chin colour below the nose, so the shade is red
    _, wide = face(eye_gap=10, mouth_gap=10)
    out = retouch(img, mesh, to_sup(wide))
    mouth = (48, 90, 80, 100)
    assert dark(img, mouth) == 0
    assert dark(out, mouth) > 40
    x0, y0, x1, y1 = mouth
    inside = out[y0:y1, x0:x1].reshape(-1, 3)
    inside = inside[inside.mean(-1) < 100]
    assert (inside[:, 0] > inside[:, 1]).mean() > 0.9  # red, not grey
    assert np.array_equal(out[:70], img[:70])  # the eyes did not move
