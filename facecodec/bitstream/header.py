"""The ``.fcs`` file header: what a decoder must know before the first chunk.

Layout in docs/format.md, section 1. Every field is range-checked when parsed: the header
comes from a network peer like the rest of the stream.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from fractions import Fraction

from facecodec.bitstream.limits import MAX_SOURCES
from facecodec.bitstream.streams import StreamSpec, StreamTable
from facecodec.defaults import FPS, INTRA_PERIOD_S, TUBE_SIZE
from facecodec.errors import FormatError

MAGIC = b"\x89FCS"
VERSION = (2, 6)  # (major, minor): a reader refuses another major version; 2.1 adds
# parity chunks, 2.2 audio chunks, 2.3 source parts (all ancillary: an older 2.x reader
# skips them), 2.4 Codec 2 sound (an older reader reads such a stream without its sound),
# 2.5 base-layer chunks (ancillary: an older reader draws the animation alone), 2.6 short
# audio chunks (ancillary: an older reader reads a stream of them without its sound)
MAX_HEADER = 65535
MAX_INFO = 8192  # bytes of the header's JSON metadata
MAX_INFO_DEPTH = 8  # nesting of that JSON: a deeply nested one would exhaust the stack
MIN_FPS = Fraction(1, 60)
MAX_FPS = 240


def intra_period_frames(fps: float) -> int:
    """:data:`INTRA_PERIOD_S`, the time between intra frames when none is asked for, in
    frames at ``fps`` (at least 1)."""
    return max(1, round(INTRA_PERIOD_S * float(fps)))


@dataclass(frozen=True)
class Header:
    """Everything a decoder must know before the first chunk."""

    table: StreamTable
    prior_id: str
    fps: Fraction = Fraction(FPS)
    crop_size: int = TUBE_SIZE
    intra_period: int = intra_period_frames(FPS)
    packet_frames: int = 1
    n_sources: int = 0
    model_id: str = ""
    model_hash: bytes = b"\0" * 16
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not MIN_FPS <= self.fps <= MAX_FPS or self.fps.numerator >= 1 << 32 \
                or self.fps.denominator >= 1 << 32:
            raise ValueError(f"fps {self.fps} not in 1/60..{MAX_FPS}")
        if not 1 <= self.packet_frames <= 255:
            raise ValueError("packet_frames must be in 1..255")
        if not 1 <= self.intra_period <= 65535:
            raise ValueError("intra_period must be in 1..65535")
        if not 16 <= self.crop_size <= 4096:
            raise ValueError(f"crop_size {self.crop_size} not in 16..4096")
        if not 0 <= self.n_sources <= MAX_SOURCES:
            raise ValueError(f"n_sources {self.n_sources} not in 0..{MAX_SOURCES}")
        if len(self.model_hash) != 16:
            raise ValueError("model_hash must be 16 bytes")
        if not isinstance(self.info, dict) or _depth(self.info) > MAX_INFO_DEPTH:
            raise ValueError(f"info must be a JSON object nested at most {MAX_INFO_DEPTH} deep")

    def to_bytes(self) -> bytes:
        b = bytearray()
        b += _str8(self.model_id) + self.model_hash + _str8(self.prior_id)
        b += struct.pack("<IIHHBB", self.fps.numerator, self.fps.denominator, self.crop_size,
                         self.intra_period, self.packet_frames, self.n_sources)
        b += struct.pack("<B", len(self.table))
        for s in self.table:
            b += _str8(s.name) + struct.pack("<HffBBH", s.count, s.lo, s.hi, s.bits,
                                             int(s.points), s.period)
        info = json.dumps(self.info, separators=(",", ":"), sort_keys=True).encode()
        if len(info) > MAX_INFO:
            raise ValueError(f"header info is {len(info)} bytes (limit {MAX_INFO})")
        b += struct.pack("<H", len(info)) + info
        if len(b) > MAX_HEADER:
            raise ValueError("header too large")
        head = MAGIC + bytes(VERSION) + struct.pack("<H", len(b)) + bytes(b)
        return head + struct.pack("<I", zlib.crc32(head))


def _str8(s: str) -> bytes:
    e = s.encode()
    if len(e) > 255:
        raise ValueError(f"string too long for the header: {s[:40]!r}...")
    return bytes([len(e)]) + e


def _depth(x: object, level: int = 0) -> int:
    """Nesting depth of parsed JSON, stopping early past the limit."""
    if level > MAX_INFO_DEPTH:
        return level
    if isinstance(x, dict):
        return max((_depth(v, level + 1) for v in x.values()), default=level + 1)
    if isinstance(x, list):
        return max((_depth(v, level + 1) for v in x), default=level + 1)
    return level


def header_length(start: bytes, name: str | None) -> int:
    """From the first 8 bytes, the header's total length (magic to CRC)."""
    if start[:4] != MAGIC:
        raise FormatError(f"not a .fcs stream (magic {start[:4]!r}, want {MAGIC!r})", 0, name)
    major, minor = start[4], start[5]
    if major > VERSION[0]:
        raise FormatError(f"format version {major}.{minor} is newer than this decoder "
                          f"({VERSION[0]}.{VERSION[1]}): upgrade facecodec", 4, name)
    if major < VERSION[0]:
        raise FormatError(f"format version {major}.{minor} predates the loss-resilient "
                          f"format {VERSION[0]}.{VERSION[1]} this decoder reads: re-encode "
                          f"the video with this facecodec", 4, name)
    (length,) = struct.unpack("<H", start[6:8])
    return 8 + length + 4


def parse_header(data: bytes, name: str | None) -> Header:
    """The header from all its bytes (``header_length`` of them)."""
    body = data[8:-4]
    (crc,) = struct.unpack("<I", data[-4:])
    if crc != zlib.crc32(data[:-4]):
        raise FormatError("header CRC mismatch (corrupt header)", len(data) - 4, name)
    try:
        return _parse_body(body)
    except (struct.error, ValueError, UnicodeDecodeError, IndexError, RecursionError) as e:
        raise FormatError(f"malformed header ({e})", 8, name) from None


def _parse_body(b: bytes) -> Header:
    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(b):
            raise ValueError("header body too short")
        out = b[pos : pos + n]
        pos += n
        return out

    def str8() -> str:
        return take(take(1)[0]).decode()

    model_id = str8()
    model_hash = take(16)
    prior_id = str8()
    num, den, crop, intra, group, nsrc = struct.unpack("<IIHHBB", take(14))
    if den == 0 or num == 0:
        raise ValueError("fps must be positive")
    n_streams = take(1)[0]
    if not 1 <= n_streams <= 32:
        raise ValueError(f"{n_streams} value streams (1..32)")
    streams = []
    for _ in range(n_streams):
        name = str8()
        count, lo, hi, bits, points, period = struct.unpack("<HffBBH", take(14))
        if points > 1:
            raise ValueError(f"stream {name}: points flag {points}")
        streams.append(StreamSpec(name, count, lo, hi, bits, bool(points), period))
    (ilen,) = struct.unpack("<H", take(2))
    if ilen > MAX_INFO:
        raise ValueError(f"info of {ilen} bytes (limit {MAX_INFO})")
    info = json.loads(take(ilen).decode()) if ilen else {}
    if pos != len(b):
        raise ValueError(f"{len(b) - pos} stray bytes after the info")
    return Header(StreamTable(tuple(streams)), prior_id, Fraction(num, den), crop, intra,
                  group, nsrc, model_id, model_hash, info)
