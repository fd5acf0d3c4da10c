"""Structural fuzzing of ``.fcs`` streams (issue #16), shared by tests/test_fuzz_stream.py
(a few hundred derandomized cases) and bench/fuzz_stream.py (>= 10,000).

Valid streams are written with the public writer (:class:`FcsWriter`, the shipped prior,
small real source images made from synthetic arrays), split into the chunk grammar of
docs/format.md (header, then kind | varint length | payload | CRC-16) by this module's own
parser, mutated by Hypothesis strategies over that grammar (kinds, lengths, varints,
fields, truncations, flipped bytes, duplicated, dropped, reordered and spliced chunks,
huge declared sizes, crafted image headers), and re-serialized with the CRCs recomputed,
so a mutation gets past the checksums to the parser behind them. A few mutations leave a
CRC wrong or a declared length false on purpose.

:func:`run_case` feeds one stream to :class:`FcsReader` in strict and tolerant mode and
every source image it yields to the source-image check and decoder (not to the neural
renderer: too slow). A case fails when strict mode raises anything but a
``FacecodecError``, when tolerant mode raises after the header, or when it takes longer
than the time limit (a hang).
"""

from __future__ import annotations

import binascii
import functools
import io
import re
import signal
import struct
import time
import traceback
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
from hypothesis import strategies as st

from facecodec.bitstream.container import (
    AUDIO_INFO,
    AudioPacket,
    DecodedFrame,
    FcsReader,
    FcsWriter,
    Header,
    SourceFrame,
    codec2_info,
)
from facecodec.bitstream.prior import Prior
from facecodec.errors import FacecodecError
from facecodec.imagecodec import decode_image, encode_image, image_info

ROOT = Path(__file__).resolve().parents[1]
PRIOR_PATH = ROOT / "models" / "frontalizer_sup_unsup_expr" / "prior.json"
TIME_LIMIT = 2.0  # seconds per case (both modes and the images); longer counts as a hang
MAGIC = b"\x89FCS"
# the kinds docs/format.md defines (0x40, parity, is the first ancillary kind, 0x40-0x7E;
# 0x41: audio; 0x42: source parts; 0x43: base layer; 0x44: short audio)
KINDS = (0x01, 0x02, 0x03, 0x10, 0x11, 0x40, 0x41, 0x42, 0x43, 0x44, 0x7F)


# -- crafted source images ----------------------------------------------------------------
def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_claiming(width: int, height: int) -> bytes:
    """A PNG signature and IHDR claiming a size, then one tiny IDAT (not a whole image)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _png_chunk(b"IEND", b""))


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real 8x8 JPEG with its frame header's size rewritten."""
    data = bytearray(encode_image(np.zeros((8, 8, 3), np.uint8), "jpeg"))
    i = data.index(b"\xff\xc0")
    data[i + 5 : i + 9] = struct.pack(">HH", height & 0xFFFF, width & 0xFFFF)
    return bytes(data)


def webp_claiming(width: int, height: int, kind: str = "lossy") -> bytes:
    """A WebP header (lossy, lossless or extended) claiming a size, with no image data."""
    if kind == "lossy":
        fourcc = b"VP8 "
        body = b"\x10\x02\x00\x9d\x01\x2a" + struct.pack("<HH", width & 0x3FFF,
                                                         height & 0x3FFF) + b"\0" * 8
    elif kind == "lossless":
        fourcc = b"VP8L"
        bits = ((width - 1) & 0x3FFF) | ((height - 1) & 0x3FFF) << 14
        body = b"\x2f" + struct.pack("<I", bits) + b"\0" * 8
    else:
        fourcc = b"VP8X"
        body = (b"\0\0\0\0" + ((width - 1) & 0xFFFFFF).to_bytes(3, "little")
                + ((height - 1) & 0xFFFFFF).to_bytes(3, "little"))
    return (b"RIFF" + struct.pack("<I", 4 + 8 + len(body)) + b"WEBP" + fourcc
            + struct.pack("<I", len(body)) + body)


@functools.cache
def crafted_images() -> tuple[bytes, ...]:
    """Images a hostile peer may send: huge claimed sizes, a real oversized image (a flat
    2048x2048 PNG, a few KB), other formats, truncated and broken ones."""
    flat = encode_image(np.full((2048, 2048, 3), 77, np.uint8), "png")
    webp = encode_image(np.full((16, 16, 3), 200, np.uint8), "webp")
    return (png_claiming(16383, 16383), png_claiming(2 ** 31 - 1, 1), png_claiming(8, 8),
            jpeg_claiming(16383, 16383), jpeg_claiming(0, 64),
            webp_claiming(16383, 16383), webp_claiming(16384, 16384, "lossless"),
            webp_claiming(1 << 24, 1 << 24, "extended"), flat, webp[:30],
            b"II*\x00" + bytes(60), b"BM" + bytes(60), b"", b"\xff\xd8" + b"\xff\xd0" * 200)


def images() -> st.SearchStrategy[bytes]:
    """Source images with damage: real small JPEG/WebP/PNG and the crafted ones, with
    flipped bytes, cuts and inserted bytes (for the header parser and the decoders)."""
    rng = np.random.default_rng(5)
    real = [encode_image(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), codec, q)
            for codec in ("jpeg", "webp", "png") for (w, h, q) in ((16, 16, 50), (40, 24, 101))]
    pool = real + list(crafted_images())

    @st.composite
    def build(draw) -> bytes:
        data = bytearray(draw(st.sampled_from(pool)))
        for _ in range(draw(st.integers(0, 3))):
            op = draw(st.sampled_from(["flip", "cut", "insert"]))
            j = draw(st.integers(0, max(0, len(data) - 1)))
            if op == "flip" and data:
                data[j] ^= draw(st.integers(1, 255))
            elif op == "cut":
                del data[j:]
            else:
                data[j:j] = draw(st.binary(min_size=1, max_size=8))
        return bytes(data)

    return build()


# -- the chunk grammar --------------------------------------------------------------------
def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def crc16(data: bytes) -> int:
    return binascii.crc_hqx(data, 0xFFFF)


@dataclass
class Chunk:
    kind: int
    payload: bytes
    length: bytes | None = None  # the length field as sent (None: the payload's, minimal)
    bad_crc: bool = False

    def to_bytes(self) -> bytes:
        body = bytes([self.kind]) + (self.length if self.length is not None
                                     else varint(len(self.payload))) + self.payload
        return body + struct.pack("<H", crc16(body) ^ (1 if self.bad_crc else 0))


@dataclass
class Stream:
    """A stream split into its grammar: header fields, chunks, and bytes no chunk holds."""

    version: bytes  # major, minor
    body: bytes  # the header body
    chunks: list[Chunk]
    tail: bytes = b""  # what did not parse as a chunk (none for the writer's streams)
    bad_header_crc: bool = False
    header_length: int | None = None  # None: len(body)

    def to_bytes(self) -> bytes:
        head = MAGIC + self.version + struct.pack(
            "<H", (len(self.body) if self.header_length is None else self.header_length)
            & 0xFFFF) + self.body
        crc = zlib.crc32(head) ^ (1 if self.bad_header_crc else 0)
        return (head + struct.pack("<I", crc) + b"".join(c.to_bytes() for c in self.chunks)
                + self.tail)


def split(data: bytes) -> Stream:
    """A valid stream -> its grammar (docs/format.md sections 1 and 2)."""
    (length,) = struct.unpack("<H", data[6:8])
    pos, chunks = 8 + length + 4, []
    while pos < len(data):
        start = pos
        kind = data[pos]
        n, shift = 0, 0
        pos += 1
        while pos < len(data):
            b = data[pos]
            pos += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        if pos + n + 2 > len(data):  # not the framing this parser knows: keep the rest
            return Stream(data[4:6], data[8 : 8 + length], chunks, data[start:])
        chunks.append(Chunk(kind, data[pos : pos + n]))
        pos += n + 2
    return Stream(data[4:6], data[8 : 8 + length], chunks)


# -- valid streams ------------------------------------------------------------------------
def random_walk(table, frames: int, rng: np.random.Generator) -> list[dict[str, np.ndarray]]:
    """Smooth motion inside each stream's range (what trackers produce)."""
    state = {s.name: rng.uniform(s.lo * 0.6 + s.hi * 0.4, s.lo * 0.4 + s.hi * 0.6, s.count)
             for s in table}
    out = []
    for _ in range(frames):
        for s in table:
            step = 0.01 * (s.hi - s.lo) * rng.standard_normal(s.count)
            state[s.name] = np.clip(state[s.name] + step, s.lo, s.hi)
        out.append({k: v.copy() for k, v in state.items()})
    return out


def base_streams(prior: Prior) -> list[bytes]:
    """Small valid streams covering the writer's features: 1-3 sources in each image
    codec, one- and several-frame packets, crops, scheduled and requested intra frames,
    recovery points and their copies, parity chunks (format 2.1), sound (format 2.2, and
    Codec 2 in short audio chunks, 2.6)."""
    out = []
    settings = [  # (n_sources, codec, packet_frames, intra_period, frames, image side,
        #           writer protection)
        (1, "webp", 1, 4, 7, 32, {}), (2, "jpeg", 3, 5, 8, 48, {}), (3, "png", 1, 3, 5, 24, {}),
        (2, "webp", 2, 30, 5, 64, {}),
        (1, "webp", 1, 10, 13, 32, {"fec": 3, "recovery_period": 3, "redundancy": 1}),
        (1, "jpeg", 2, 8, 11, 24, {"fec": 2}),
        (1, "webp", 1, 30, 9, 32, {"audio": "opus"}),
        (1, "webp", 1, 30, 9, 32, {"audio": "codec2"})]
    for i, (n_src, codec, group, period, frames, side, protection) in enumerate(settings):
        rng = np.random.default_rng(i)
        values = random_walk(prior.table, frames, rng)
        protection = dict(protection)
        sound = protection.pop("audio", False)
        header = Header(prior.table, prior.id, fps=Fraction(15), crop_size=256,
                        intra_period=period, packet_frames=group, n_sources=n_src,
                        model_id="frontalizer_sup_unsup_expr", model_hash=bytes(range(16)),
                        info={"fuzz": i, **({"audio": dict(AUDIO_INFO)} if sound == "opus"
                                            else {"audio": codec2_info(1300)} if sound
                                            else {})})
        buf = io.BytesIO()
        w = FcsWriter(buf, header, prior, **protection)
        y, x = np.mgrid[:side, :side]
        for slot in range(n_src):  # a synthetic face-ish image: gradients and a disc
            img = np.stack([x * 255 // side, y * 255 // side,
                            np.where((x - side / 2) ** 2 + (y - side / 2) ** 2 < (side / 3) ** 2,
                                     200 - 40 * slot, 30)], -1).astype(np.uint8)
            w.add_source(slot, codec, side, side, encode_image(img, codec, 70), values[slot])
        for f, v in enumerate(values):
            if f == frames // 2:
                w.add_crop((10.0 + f, 20.0, 180.0), (640, 480))
            if f == frames - 2:
                w.request_intra()
            if sound == "opus":  # a short Opus-like packet per frame (not decoded here)
                w.add_audio(AudioPacket(f * 3200 - 312, bytes([0x78, f % 256, 7, 9])))
            elif sound:  # a 40-ms Codec 2 packet on the 20-ms grid: a short audio chunk
                w.add_audio(AudioPacket(f * 2880 - 960, bytes([f % 256, 1, 2, 3, 4, 5, 6])))
            w.add_frame(v)
        w.close()
        out.append(buf.getvalue())
    return out


# -- mutations ----------------------------------------------------------------------------
HUGE = [0, 1, 127, 128, 255, 256, 16383, 16384, 65535, 1 << 20, (1 << 20) + 1, 16 << 20,
        (16 << 20) + 1, 1 << 31, (1 << 32) - 1, 1 << 32, (1 << 35) - 1]


def _field_offsets(body: bytes) -> int | None:
    """Offset of the fixed header fields (fps...) after model id, hash and prior id."""
    try:
        pos = 1 + body[0] + 16
        return pos + 1 + body[pos]
    except IndexError:
        return None


def _pick(draw, s: Stream) -> int | None:
    return draw(st.integers(0, len(s.chunks) - 1)) if s.chunks else None


def m_flip_payload(draw, s: Stream, others) -> str:
    i = _pick(draw, s)
    if i is None or not s.chunks[i].payload:
        return "flip: no payload"
    p = bytearray(s.chunks[i].payload)
    for _ in range(draw(st.integers(1, 4))):
        j = draw(st.integers(0, len(p) - 1))
        p[j] ^= draw(st.integers(1, 255))
    s.chunks[i].payload = bytes(p)
    return f"flip payload of chunk {i}"


def m_kind(draw, s: Stream, others) -> str:
    i = _pick(draw, s)
    if i is None:
        return "kind: no chunk"
    s.chunks[i].kind = draw(st.one_of(st.sampled_from(KINDS), st.integers(0, 255)))
    return f"chunk {i} kind -> 0x{s.chunks[i].kind:02x}"


def m_truncate_payload(draw, s: Stream, others) -> str:
    i = _pick(draw, s)
    if i is None:
        return "truncate: no chunk"
    n = draw(st.integers(0, len(s.chunks[i].payload)))
    s.chunks[i].payload = s.chunks[i].payload[:n]
    return f"chunk {i} payload cut to {n}"


def m_extend_payload(draw, s: Stream, others) -> str:
    i = _pick(draw, s)
    if i is None:
        return "extend: no chunk"
    s.chunks[i].payload += draw(st.binary(min_size=1, max_size=64))
    return f"chunk {i} payload extended"


def m_length(draw, s: Stream, others) -> str:
    """The length field lies (huge, off by a few, non-minimal or overlong varint)."""
    i = _pick(draw, s)
    if i is None:
        return "length: no chunk"
    c = s.chunks[i]
    how = draw(st.sampled_from(["huge", "off", "padded", "overlong", "raw"]))
    if how == "huge":
        c.length = varint(draw(st.sampled_from(HUGE)))
    elif how == "off":
        c.length = varint(max(0, len(c.payload) + draw(st.integers(-3, 3))))
    elif how == "padded":  # a non-minimal encoding of the right value
        v = varint(len(c.payload))
        c.length = bytes(b | 0x80 for b in v) + b"\x80" * draw(st.integers(0, 4)) + b"\x00"
    elif how == "overlong":
        c.length = b"\xff" * draw(st.integers(5, 9)) + b"\x01"
    else:
        c.length = draw(st.binary(min_size=0, max_size=6))
    return f"chunk {i} length field {how} {c.length.hex()}"


def m_duplicate(draw, s: Stream, others) -> str:
    i = _pick(draw, s)
    if i is None:
        return "dup: no chunk"
    j = draw(st.integers(0, len(s.chunks)))
    s.chunks.insert(j, Chunk(s.chunks[i].kind, s.chunks[i].payload))
    return f"chunk {i} duplicated at {j}"


def m_drop(draw, s: Stream, others) -> str:
    i = _pick(draw, s)
    if i is None:
        return "drop: no chunk"
    del s.chunks[i]
    return f"chunk {i} dropped"


def m_swap(draw, s: Stream, others) -> str:
    if len(s.chunks) < 2:
        return "swap: too few"
    i, j = draw(st.integers(0, len(s.chunks) - 1)), draw(st.integers(0, len(s.chunks) - 1))
    s.chunks[i], s.chunks[j] = s.chunks[j], s.chunks[i]
    return f"chunks {i} and {j} swapped"


def m_splice(draw, s: Stream, others) -> str:
    """Chunks of another valid stream (other settings, same prior) spliced in."""
    other = others[draw(st.integers(0, len(others) - 1))]
    if not other.chunks:
        return "splice: empty"
    a = draw(st.integers(0, len(other.chunks) - 1))
    b = draw(st.integers(a, min(len(other.chunks), a + 4)))
    j = draw(st.integers(0, len(s.chunks)))
    s.chunks[j:j] = [Chunk(c.kind, c.payload) for c in other.chunks[a:b]]
    return f"chunks {a}:{b} of another stream spliced at {j}"


def m_insert(draw, s: Stream, others) -> str:
    kind = draw(st.one_of(st.sampled_from(KINDS), st.integers(0x40, 0x7E), st.integers(0, 255)))
    payload = draw(st.binary(max_size=48))
    if kind == 0x02 and draw(st.booleans()):  # an intra packet: a plausible frame index
        payload = varint(draw(st.sampled_from(HUGE))) + payload
    j = draw(st.integers(0, len(s.chunks)))
    s.chunks.insert(j, Chunk(kind, payload))
    return f"chunk 0x{kind:02x} ({len(payload)} bytes) inserted at {j}"


def m_varint_field(draw, s: Stream, others) -> str:
    """The varint at the start of an intra packet or crop chunk (its frame index)."""
    idx = [i for i, c in enumerate(s.chunks) if c.kind in (0x02, 0x11)]
    if not idx:
        return "varint: none"
    i = draw(st.sampled_from(idx))
    p = s.chunks[i].payload
    n = 0
    while n < len(p) and p[n] & 0x80:
        n += 1
    new = draw(st.one_of(st.sampled_from(HUGE).map(varint),
                         st.just(b"\xff" * 6), st.binary(min_size=1, max_size=6)))
    s.chunks[i].payload = new + p[n + 1 :]
    return f"chunk {i} leading varint -> {new.hex()}"


def m_frame_count(draw, s: Stream, others) -> str:
    """End chunk count or a packet's frame count byte."""
    idx = [i for i, c in enumerate(s.chunks) if c.kind in (0x7F, 0x01)]
    if not idx:
        return "count: none"
    i = draw(st.sampled_from(idx))
    c = s.chunks[i]
    if c.kind == 0x7F:
        c.payload = struct.pack("<I", draw(st.sampled_from(HUGE)) & 0xFFFFFFFF)
    elif c.payload:
        c.payload = bytes([draw(st.integers(0, 255))]) + c.payload[1:]
    return f"chunk {i} count changed"


def m_parity(draw, s: Stream, others) -> str:
    """A parity chunk's fields (first frame, packet count, length XOR, the XOR bytes), or
    a frame packet of its group dropped so that the parity is used."""
    idx = [i for i, c in enumerate(s.chunks) if c.kind == 0x40]
    if not idx:
        return "parity: none"
    i = draw(st.sampled_from(idx))
    p = bytearray(s.chunks[i].payload)
    what = draw(st.sampled_from(["first", "count", "flip", "cut", "drop", "long"]))
    if what == "first" and p:
        p[0] = draw(st.integers(0, 255))
    elif what == "count" and len(p) > 1:
        p[1] = draw(st.sampled_from([0, 1, 2, 3, 15, 16, 17, 255]))
    elif what == "flip" and p:
        p[draw(st.integers(0, len(p) - 1))] ^= draw(st.integers(1, 255))
    elif what == "cut":
        del p[draw(st.integers(0, len(p))) :]
    elif what == "long":
        p += bytes(draw(st.sampled_from([1, 100, 2048, 5000])))
    else:
        frames = [j for j in range(max(0, i - 4), i) if s.chunks[j].kind in (0x01, 0x02, 0x03)]
        if frames:
            del s.chunks[draw(st.sampled_from(frames))]
        return f"a packet of parity chunk {i}'s group dropped"
    s.chunks[i].payload = bytes(p)
    return f"parity chunk {i} {what}"


def m_source(draw, s: Stream, others) -> str:
    """A source chunk's fields: slot, codec, declared size, image length, the image."""
    idx = [i for i, c in enumerate(s.chunks) if c.kind == 0x10 and len(c.payload) >= 6]
    if not idx:
        return "source: none"
    i = draw(st.sampled_from(idx))
    slot, codec, w, h, image, values = source_fields(s.chunks[i].payload)
    what = draw(st.sampled_from(["slot", "codec", "size", "image", "crafted", "ilen"]))
    ilen = None
    if what == "slot":
        slot = draw(st.sampled_from([0, 1, 2, 3, 7, 8, 9, 254, 255]))
    elif what == "codec":
        codec = draw(st.integers(0, 255))
    elif what == "size":
        w, h = draw(st.sampled_from(HUGE[:9])), draw(st.sampled_from(HUGE[:9]))
    elif what == "image":
        image = bytearray(image)
        if image:
            for _ in range(draw(st.integers(1, 3))):
                image[draw(st.integers(0, len(image) - 1))] ^= draw(st.integers(1, 255))
        image = bytes(image[: draw(st.integers(0, len(image)))]) if draw(st.booleans()) \
            else bytes(image)
    elif what == "crafted":
        image = draw(st.sampled_from(crafted_images()))
        if draw(st.booleans()):  # declare what the image claims, to reach the size cap
            try:
                _, w, h = image_info(image)
                w, h = w & 0xFFFF, h & 0xFFFF
            except FacecodecError:
                pass
    else:
        ilen = draw(st.sampled_from(HUGE))
    s.chunks[i].payload = source_payload(slot, codec, w, h, image, values, ilen)
    return f"source chunk {i} {what}"


def source_fields(p: bytes) -> tuple[int, int, int, int, bytes, bytes]:
    """A source chunk's payload -> slot, codec byte, width, height, image, coded values."""
    slot, codec, w, h = struct.unpack("<BBHH", p[:6])
    n, pos = 0, 6
    for shift in range(0, 35, 7):
        if pos >= len(p):
            break
        n |= (p[pos] & 0x7F) << shift
        pos += 1
        if not p[pos - 1] & 0x80:
            break
    return slot, codec, w, h, p[pos : pos + n], p[pos + n :]


def source_payload(slot: int, codec: int, w: int, h: int, image: bytes, values: bytes,
                   ilen: int | None = None) -> bytes:
    """The inverse of :func:`source_fields`; ``ilen`` overrides the image length field."""
    body = struct.pack("<BBHH", slot & 0xFF, codec & 0xFF, w & 0xFFFF, h & 0xFFFF)
    return body + varint(len(image) if ilen is None else ilen) + image + values


def m_header(draw, s: Stream, others) -> str:
    """A header field (fps, crop size, intra period, packet frames, sources, table, info),
    the CRC-32 recomputed."""
    body = bytearray(s.body)
    pos = _field_offsets(bytes(body))
    what = draw(st.sampled_from(["field", "byte", "model_id", "version", "length", "crc"]))
    if what == "field" and pos is not None and pos + 14 <= len(body):
        off, size = draw(st.sampled_from([(0, 4), (4, 4), (8, 2), (10, 2), (12, 1), (13, 1),
                                          (14, 1)]))
        value = draw(st.sampled_from(HUGE)) & ((1 << (8 * size)) - 1)
        body[pos + off : pos + off + size] = value.to_bytes(size, "little")
    elif what == "byte" and body:
        j = draw(st.integers(0, len(body) - 1))
        body[j] ^= draw(st.integers(1, 255))
    elif what == "model_id":
        new = draw(st.sampled_from([b"../x", b"/etc", b"models/../..", b"", b"A" * 255,
                                    b"\xff\xfe", b"fom\n", b"frontalizer_sup_unsup_expr"]))
        body = bytearray(bytes([len(new)]) + new + bytes(body[1 + body[0] :]))
    elif what == "version":
        s.version = bytes([draw(st.integers(0, 3)), draw(st.integers(0, 255))])
    elif what == "length":
        s.header_length = draw(st.integers(0, 65535))
    else:
        s.bad_header_crc = True
    s.body = bytes(body)
    return f"header {what}"


def m_bad_crc(draw, s: Stream, others) -> str:
    i = _pick(draw, s)
    if i is None:
        return "crc: no chunk"
    s.chunks[i].bad_crc = True
    return f"chunk {i} CRC wrong"


def m_garbage(draw, s: Stream, others) -> str:
    """Bytes between chunks that are no chunk (a lost packet boundary, say)."""
    j = draw(st.integers(0, len(s.chunks)))
    junk = draw(st.binary(min_size=1, max_size=32))
    s.chunks.insert(j, _Raw(junk))
    return f"{len(junk)} junk bytes at {j}"


class _Raw(Chunk):
    """Raw bytes in the chunk list (no framing)."""

    def __init__(self, data: bytes):
        super().__init__(0, data)

    def to_bytes(self) -> bytes:
        return self.payload


MUTATIONS: list[Callable] = [
    m_flip_payload, m_kind, m_truncate_payload, m_extend_payload, m_length, m_duplicate,
    m_drop, m_swap, m_splice, m_insert, m_varint_field, m_frame_count, m_source, m_header,
    m_bad_crc, m_garbage, m_parity]


@dataclass
class Corpus:
    prior: Prior
    bases: list[bytes]
    split: list[Stream] = field(default_factory=list)

    @classmethod
    def make(cls) -> Corpus:
        prior = Prior.load(PRIOR_PATH)
        bases = base_streams(prior)
        return cls(prior, bases, [split(b) for b in bases])


def streams(corpus: Corpus) -> st.SearchStrategy[tuple[bytes, list[str]]]:
    """Mutated streams: a valid base stream, 1-4 structural mutations, then maybe a cut
    or a raw bit flip on the serialized bytes (CRCs not recomputed for those)."""

    @st.composite
    def build(draw) -> tuple[bytes, list[str]]:
        b = draw(st.integers(0, len(corpus.bases) - 1))
        s = split(corpus.bases[b])
        log = [f"base {b}"]
        for _ in range(draw(st.integers(0, 4))):
            log.append(draw(st.sampled_from(MUTATIONS))(draw, s, corpus.split))
        data = s.to_bytes()
        post = draw(st.sampled_from(["none", "none", "cut", "bitflip"]))
        if post == "cut" and data:
            n = draw(st.integers(0, len(data)))
            data = data[:n]
            log.append(f"cut at {n}")
        elif post == "bitflip" and data:
            j = draw(st.integers(0, len(data) - 1))
            data = data[:j] + bytes([data[j] ^ (1 << draw(st.integers(0, 7)))]) + data[j + 1 :]
            log.append(f"bit flip at {j}")
        return data, log

    return build()


# -- running one case ---------------------------------------------------------------------
class Hang(BaseException):
    """The case ran past the time limit (a BaseException: no ``except Exception`` in the
    code under test may swallow it)."""


@dataclass
class Outcome:
    ok: bool
    kind: str  # "ok", "error" (an unexpected exception), "hang"
    detail: str = ""
    seconds: float = 0.0  # CPU seconds
    strict: str = ""  # what strict reading ended with: "end" or the error, digits masked
    anomalies: list[str] = field(default_factory=list)  # odd but allowed (not failures)


def _alarm(signum, frame):
    raise Hang()


def _strict(data: bytes, prior: Prior) -> str:
    try:
        reader = FcsReader(data, name="fuzz", prior=prior)
        for ev in reader:
            if isinstance(ev, SourceFrame):
                decode_image(ev.image, "fuzz", codec=ev.codec, width=ev.width,
                             height=ev.height)
    except FacecodecError as e:
        problem = getattr(e, "problem", str(e))
        return type(e).__name__ + ": " + re.sub(r"0x[0-9a-fA-F]+|\d+", "N", problem)[:60]
    return "end"


def _tolerant(data: bytes, prior: Prior) -> list[str]:
    notes: list[str] = []
    try:
        reader = FcsReader(data, name="fuzz", prior=prior, tolerant=True)
    except FacecodecError:
        return notes  # a damaged header: the stream cannot be joined at all
    expect = 0
    for ev in reader:  # nothing after the header may raise
        if isinstance(ev, DecodedFrame):
            if ev.index > expect:  # a gap the reader chose not to fill with held frames
                notes.append(f"tolerant: frames {expect}..{ev.index - 1} not shown")
            elif ev.index < expect:
                notes.append(f"tolerant: frame {ev.index} after frame {expect - 1}")
            expect = ev.index + 1
            for spec in ([] if ev.held else reader.header.table):  # held: repeated values
                v = ev.values[spec.name]
                if not np.all(np.isfinite(v)) or v.min() < spec.lo - 1e-4 or \
                        v.max() > spec.hi + 1e-4:
                    notes.append(f"tolerant: frame {ev.index} {spec.name} out of range")
        elif isinstance(ev, SourceFrame):
            try:
                decode_image(ev.image, "fuzz", codec=ev.codec, width=ev.width,
                             height=ev.height)
            except FacecodecError:
                pass
    return notes


def run_case(data: bytes, prior: Prior, time_limit: float = TIME_LIMIT) -> Outcome:
    """One stream through strict and tolerant reading and the image checks, within
    ``time_limit`` CPU seconds (a profiling timer: a machine busy with other work does
    not make a case hang; a wall-clock alarm at 10x is the backstop). Main thread only."""
    old = {sig: signal.signal(sig, _alarm) for sig in (signal.SIGPROF, signal.SIGALRM)}
    signal.setitimer(signal.ITIMER_PROF, time_limit)
    signal.setitimer(signal.ITIMER_REAL, 10 * time_limit)
    t0 = time.process_time()
    mode, strict = "strict", ""
    try:
        strict = _strict(data, prior)
        mode = "tolerant"
        notes = _tolerant(data, prior)
    except Hang:
        return Outcome(False, "hang", f"{mode}: over {time_limit} s",
                       time.process_time() - t0, strict)
    except Exception:  # noqa: BLE001 - what the harness looks for
        return Outcome(False, "error", f"{mode}: {traceback.format_exc()}",
                       time.process_time() - t0, strict)
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.setitimer(signal.ITIMER_REAL, 0)
        for sig, handler in old.items():
            signal.signal(sig, handler)
    dt = time.process_time() - t0
    if dt > time_limit:  # a C call the timer could not interrupt
        return Outcome(False, "hang", f"over {time_limit} s ({dt:.1f} s)", dt, strict, notes)
    return Outcome(True, "ok", "", dt, strict, notes)


def quiet_opencv() -> None:
    """OpenCV logs a warning per broken image on stderr: thousands in a fuzzing run."""
    import cv2

    cv2.setLogLevel(2)  # LOG_LEVEL_ERROR


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB: Linux's VmHWM, which starts
    afresh at exec (``ru_maxrss`` keeps the parent's peak across fork and exec, so a
    benchmark started from a big pytest process would report the parent's)."""
    import resource

    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
