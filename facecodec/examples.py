"""The example input: a short video made from a shipped still photo, for the demo, the
examples and the tests.

``examples/astronaut.jpg`` (a NASA portrait in the public domain, see examples/README.md;
it ships as package data, ``facecodec._examples``) is moved by a smooth synthetic head
motion (turn, nod, sway, zoom) into a short video. The mouth does not move and the head
turns in the image plane only: it exercises the whole pipeline on a real face without
shipping anyone's video; it does not show what the codec does with real talking.
``facecodec demo`` encodes and decodes it.
"""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np

from facecodec.errors import InputError
from facecodec.resources import shipped

PHOTO = "astronaut.jpg"  # in the shipped examples (facecodec.resources)


BEEP_HZ, BEEP_S = 1000.0, 0.05


def make_example_video(dst: Path, seconds: float = 8.0, fps: int = 15,
                       beeps: list[float] | None = None) -> Path:
    """Write the example video (H.264, 512x512) from the still photo; with ``beeps``, an
    AAC track that is silent but for a 50-ms 1-kHz beep at each of those times (s), to
    check where the sound lands."""
    path = shipped("examples") / PHOTO
    photo = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if photo is None:
        raise InputError(f"{path} is missing or unreadable")
    photo = np.ascontiguousarray(photo[..., ::-1])
    h, w = photo.shape[:2]
    centre = (225.0, 125.0)  # the face, in the photo's pixels
    with av.open(str(dst), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        sound = None
        if beeps is not None:
            sound = out.add_stream("aac", rate=48000, layout="mono")
            t = np.arange(round(seconds * 48000)) / 48000
            on = np.zeros_like(t, dtype=bool)
            for b in beeps:
                on |= (t >= b) & (t < b + BEEP_S)
            pcm = (np.sin(2 * np.pi * BEEP_HZ * t) * 12000 * on).astype(np.int16)
        for i in range(round(seconds * fps)):
            t = i / fps
            angle = 6.0 * np.sin(2 * np.pi * t / 4.0)
            scale = 1.0 + 0.04 * np.sin(2 * np.pi * t / 6.0)
            m = cv2.getRotationMatrix2D(centre, angle, scale)
            m[:, 2] += (12.0 * np.sin(2 * np.pi * t / 5.0), 6.0 * np.sin(2 * np.pi * t / 3.0))
            frame = cv2.warpAffine(photo, m, (w, h), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REFLECT)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, "rgb24")))
            if sound is not None:
                a, b = round(i * 48000 / fps), round((i + 1) * 48000 / fps)
                piece = av.AudioFrame.from_ndarray(pcm[None, a:b], format="s16", layout="mono")
                piece.sample_rate, piece.pts = 48000, a
                out.mux(sound.encode(piece))
        out.mux(stream.encode(None))
        if sound is not None:
            out.mux(sound.encode(None))
    return dst
