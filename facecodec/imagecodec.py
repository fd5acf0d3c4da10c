"""Still-image coding of source frames (OpenCV's libwebp / libjpeg / libpng).

Source frames are sent once per call; at 256x256 a WebP at quality 80 is ~5-10 KB, so
over a short clip they, not the per-frame values, dominate the all-in bitrate
(``facecodec bitrate --report`` shows both).
"""

from __future__ import annotations

import numpy as np

from facecodec.errors import FormatError

CODECS = ("webp", "jpeg", "png")


def encode_image(rgb: np.ndarray, codec: str = "webp", quality: int = 80) -> bytes:
    """RGB uint8 (H, W, 3) -> compressed bytes. ``quality`` 1..100 (png: ignored)."""
    import cv2

    if codec not in CODECS:
        raise ValueError(f"image codec {codec!r} not in {CODECS}")
    params = {"webp": [cv2.IMWRITE_WEBP_QUALITY, quality],
              "jpeg": [cv2.IMWRITE_JPEG_QUALITY, quality], "png": []}[codec]
    ok, buf = cv2.imencode("." + ("jpg" if codec == "jpeg" else codec),
                           np.ascontiguousarray(rgb[..., ::-1]), params)
    if not ok:
        raise ValueError(f"{codec} encoding failed")
    return buf.tobytes()


def decode_image(data: bytes, source: str | None = None) -> np.ndarray:
    """Compressed bytes -> RGB uint8 (H, W, 3); FormatError when they are not an image."""
    import cv2

    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise FormatError("source image does not decode", source=source)
    return np.ascontiguousarray(image[..., ::-1])
