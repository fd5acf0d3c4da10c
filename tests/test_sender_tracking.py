"""The front end loses and finds a face again: synthetic sequences made from the shipped
example photo (examples/astronaut.jpg), so no clip from ../shared is needed. MediaPipe
runs on ~100 small frames: a few seconds."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from facecodec.sender.frontend import FrontEnd
from facecodec.sender.video import Frame

FPS = 15
W, H = 640, 360
PHOTO = Path(__file__).resolve().parents[1] / "examples" / "astronaut.jpg"


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    """The head and shoulders of the photo, 160 x 200 (the face spans x 179-271, y 70-178
    of the 512 x 512 photo)."""
    photo = cv2.imread(str(PHOTO), cv2.IMREAD_COLOR)[..., ::-1]
    return np.ascontiguousarray(photo[20:220, 145:305])


def picture(face: np.ndarray, x: int | None) -> np.ndarray:
    """A grey picture with the face's left edge at column ``x`` (None: no face); the part
    outside the picture is cut off."""
    out = np.full((H, W, 3), 40, np.uint8)
    if x is not None:
        w = face.shape[1]
        x0, x1 = max(x, 0), min(x + w, W)
        if x1 > x0:
            out[80:80 + face.shape[0], x0:x1] = face[:, x0 - x:x1 - x]
    return out


def valid(face: np.ndarray, xs: list[int | None]) -> np.ndarray:
    with FrontEnd() as fe:
        return np.array([fe.process(Frame(picture(face, x), i / FPS, i)).valid
                         for i, x in enumerate(xs)])


def test_face_found_again_at_once_in_another_place(face):
    """The person leaves (no face for 10 frames) and comes back on the other side of the
    picture. Following the same head only near where it was lost kept the returning face
    flagged for ~1.4 s; with nobody in the picture meanwhile there is no one else it could
    be, and it is followed again within 0.3 s."""
    xs = [40] * 10 + [None] * 10 + [440] * 15
    ok = valid(face, xs)
    back = 20
    assert ok[:10].all() and not ok[10:back].any()
    first = back + int(np.argmax(ok[back:]))
    assert ok[first:].all()
    assert (first - back) / FPS <= 0.3, f"found again {(first - back) / FPS:.2f} s after"


def test_face_followed_while_it_moves_out_and_back_in(face):
    """A face sliding fast (40 px a frame, 600 px/s) out of the picture and back: every
    frame that shows it whole has landmarks. MediaPipe's tracking loses a face moving this
    fast every second frame and re-detects only on the next one; the tracker re-runs the
    frame at once, and the returning face is taken wherever it reappears."""
    out = list(range(240, 700, 40)) + [700] * 8  # out through the right edge
    back = list(range(700, 239, -40)) + [240] * 10  # and back to where it was
    xs = [240] * 10 + out + back
    ok = valid(face, xs)
    whole = np.array([0 <= x <= W - face.shape[1] for x in xs])
    assert ok[whole].all(), f"lost at frames {np.flatnonzero(whole & ~ok).tolist()}"
    assert not ok[[x >= W for x in xs]].any()  # no face: flagged
