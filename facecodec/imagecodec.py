"""Still-image coding of source frames (OpenCV's libwebp / libjpeg / libpng).

Source frames are sent once per call; at 256x256 a WebP at quality 80 is ~5-10 KB, so
over a short clip they, not the per-frame values, dominate the all-in bitrate
(``facecodec bitrate --report`` shows both).

A source image comes from a network peer: before it is decoded, its format and size are
read from its header bytes (:func:`image_info`) and checked against what its source chunk
declares and against ``MAX_SOURCE_SIDE`` (a 794 KB stream holding a 16383x16383 image
once made the decoder peak at 7.3 GB). Only JPEG, WebP and PNG reach a decoder: OpenCV
would otherwise decode any of its formats (TIFF, EXR, ...) from bytes that claim to be one.
"""

from __future__ import annotations

import re
import struct

import cv2
import numpy as np

from facecodec.bitstream.limits import MAX_SOURCE_SIDE
from facecodec.defaults import SOURCE_CODEC, SOURCE_QUALITY
from facecodec.defaults import SOURCE_CODECS as CODECS
from facecodec.errors import FormatError

# JPEG start-of-frame markers (the frame header holding the size); C4, C8 and CC are other
# segments that share the range
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_MAX_SEGMENTS = 256  # segments before the frame header (an encoder writes ~5)
_FILL = re.compile(rb"\xff+")


def encode_image(rgb: np.ndarray, codec: str = SOURCE_CODEC, quality: int = SOURCE_QUALITY
                 ) -> bytes:
    """RGB uint8 (H, W, 3) -> compressed bytes. ``quality`` 1..100 (png: ignored)."""
    if codec not in CODECS:
        raise ValueError(f"image codec {codec!r} not in {CODECS}")
    params = {"webp": [cv2.IMWRITE_WEBP_QUALITY, quality],
              "jpeg": [cv2.IMWRITE_JPEG_QUALITY, quality], "png": []}[codec]
    ok, buf = cv2.imencode("." + ("jpg" if codec == "jpeg" else codec),
                           np.ascontiguousarray(rgb[..., ::-1]), params)
    if not ok:
        raise ValueError(f"{codec} encoding failed")
    return buf.tobytes()


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """A square RGB uint8 image at ``size`` x ``size``: area averaging to shrink, bicubic to
    enlarge; the image itself when it has that size. The one resize of what is sent or
    shown as a picture (a small first source, decoded frames, the eval's scoring size), so
    that they agree."""
    if image.shape[0] == size:
        return image
    interp = cv2.INTER_CUBIC if size > image.shape[0] else cv2.INTER_AREA
    return np.clip(cv2.resize(image, (size, size), interpolation=interp), 0, 255).astype(np.uint8)


def image_info(data: bytes, source: str | None = None) -> tuple[str, int, int]:
    """``(codec, width, height)`` of an encoded image, read from its header bytes only
    (nothing is decoded or allocated). FormatError unless it is a JPEG, WebP or PNG whose
    header gives its size."""
    data = bytes(data)
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        codec, size = "png", _png_size
    elif data[:2] == b"\xff\xd8":
        codec, size = "jpeg", _jpeg_size
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        codec, size = "webp", _webp_size
    else:
        raise FormatError(f"source image is not a JPEG, WebP or PNG (starts {data[:12].hex()})",
                          source=source)
    try:
        return (codec, *size(data))
    except (struct.error, IndexError):  # a field past the end
        raise FormatError(f"source {codec} header is truncated", source=source) from None
    except FormatError as e:
        raise FormatError(e.problem, source=source) from None


def _png_size(data: bytes) -> tuple[int, int]:
    # the first chunk is IHDR (13 bytes): width, height (u32 big-endian), ...
    if data[8:16] != b"\x00\x00\x00\x0dIHDR":
        raise FormatError("source PNG does not start with its IHDR chunk")
    return struct.unpack(">II", data[16:24])


def _png_chunks_fit(data: bytes) -> bool:
    """Does every chunk's length (u32 big-endian, then type, data, CRC) fit in the bytes
    up to IEND? (A PNG cut inside a chunk header is left to the decoder: it fails.)"""
    pos = 8
    while pos + 8 <= len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        if n > len(data) - pos - 12:
            return False
        if data[pos + 4 : pos + 8] == b"IEND":
            return True
        pos += 12 + n
    return True


def _jpeg_size(data: bytes) -> tuple[int, int]:
    pos = 2
    for _ in range(_JPEG_MAX_SEGMENTS):
        fill = _FILL.match(data, pos)  # a marker: 0xFF (any number of them), then its code
        if fill is None:
            raise FormatError(f"source JPEG has no marker at byte {pos}")
        pos = fill.end()
        code = data[pos]
        pos += 1
        if code in _JPEG_SOF:  # length (2), precision (1), height (2), width (2)
            height, width = struct.unpack(">HH", data[pos + 3 : pos + 7])
            return width, height
        if code in (0xD9, 0xDA):
            raise FormatError("source JPEG has no frame header before its image data")
        if 0xD0 <= code <= 0xD7 or code == 0x01:  # markers without a segment
            continue
        (length,) = struct.unpack(">H", data[pos : pos + 2])
        if length < 2:
            raise FormatError(f"source JPEG has a segment of length {length}")
        pos += length
    raise FormatError(f"source JPEG has no frame header in its first {_JPEG_MAX_SEGMENTS} "
                      f"segments")


def _webp_size(data: bytes) -> tuple[int, int]:
    # RIFF size WEBP, then one chunk: 'VP8 ' (lossy), 'VP8L' (lossless) or 'VP8X' (extended)
    fourcc, payload = data[12:16], 20
    if len(data) < payload + {b"VP8 ": 10, b"VP8L": 5, b"VP8X": 10}.get(fourcc, 0):
        raise IndexError  # truncated
    if fourcc == b"VP8 ":  # frame tag (3), start code 9d 01 2a, 14-bit width and height
        if data[payload + 3 : payload + 6] != b"\x9d\x01\x2a":
            raise FormatError("source WebP (lossy) lacks its start code")
        w, h = struct.unpack("<HH", data[payload + 6 : payload + 10])
        return w & 0x3FFF, h & 0x3FFF
    if fourcc == b"VP8L":  # signature 0x2f, then width - 1 and height - 1 in 14 bits each
        if data[payload] != 0x2F:
            raise FormatError("source WebP (lossless) lacks its signature")
        (bits,) = struct.unpack("<I", data[payload + 1 : payload + 5])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if fourcc == b"VP8X":  # flags (1), reserved (3), canvas width - 1, height - 1 (u24)
        if data[payload] & 0x02:
            raise FormatError("source WebP is animated")
        b = data[payload + 4 : payload + 10]
        if len(b) < 6:
            raise IndexError
        return (int.from_bytes(b[:3], "little") + 1, int.from_bytes(b[3:], "little") + 1)
    raise FormatError(f"source WebP has an unknown first chunk {fourcc!r}")


def check_image(data: bytes, codec: str | None = None, width: int | None = None,
                height: int | None = None, source: str | None = None) -> tuple[str, int, int]:
    """:func:`image_info`, checked before anything is decoded: the real format is
    ``codec`` and the size ``width`` x ``height`` (what the source chunk declares, when
    given), each side in ``1 .. MAX_SOURCE_SIDE``. Returns ``(codec, width, height)``."""
    real, w, h = image_info(data, source)
    if codec is not None and real != codec:
        raise FormatError(f"source image is a {real}, its chunk says {codec}", source=source)
    if (width is not None and w != width) or (height is not None and h != height):
        raise FormatError(f"source image is {w}x{h}, its chunk says {width}x{height}",
                          source=source)
    if not (1 <= w <= MAX_SOURCE_SIDE and 1 <= h <= MAX_SOURCE_SIDE):
        raise FormatError(f"source image is {w}x{h}, sides must be in 1..{MAX_SOURCE_SIDE}",
                          source=source)
    return real, w, h


def decode_image(data: bytes, source: str | None = None, *, codec: str | None = None,
                 width: int | None = None, height: int | None = None) -> np.ndarray:
    """Compressed bytes -> RGB uint8 (H, W, 3); FormatError when they are not an image, or
    fail :func:`check_image` (checked before decoding: the memory a peer can make the
    decoder use is bounded by ``MAX_SOURCE_SIDE``)."""
    real, w, h = check_image(data, codec, width, height, source)
    if real == "png" and not _png_chunks_fit(data):
        # OpenCV allocates what a PNG chunk's length field claims (found by fuzzing: one
        # flipped byte in a 24x24 source made it take 370 MB)
        raise FormatError("source PNG has a chunk longer than the image", source=source)
    # the orientation tag is ignored: the image must be the size its header says
    image = cv2.imdecode(np.frombuffer(data, np.uint8),
                         cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        raise FormatError("source image does not decode", source=source)
    if image.shape[:2] != (h, w):
        raise FormatError(f"source image decodes to {image.shape[1]}x{image.shape[0]}, its "
                          f"header says {w}x{h}", source=source)
    return np.ascontiguousarray(image[..., ::-1])


def decode_source(frame, source: str | None = None) -> np.ndarray:
    """A source chunk's image (a ``SourceFrame``: ``image``, ``codec``, ``width``,
    ``height``) -> RGB uint8, its declared codec and size checked before decoding."""
    return decode_image(frame.image, source, codec=frame.codec, width=frame.width,
                        height=frame.height)
