"""The ``.fcs`` container: a header, then chunks (source frames, frame packets, crops, end).

Written and read incrementally: a writer emits each chunk as soon as it is complete (one
packet per frame by default, for latency), a reader needs only a ``read(n)`` stream. The
byte layout is specified in docs/format.md; this module is its reference implementation.

Every malformed input raises :class:`facecodec.errors.FormatError` with the byte offset
of the problem; every length is bounded before anything is allocated or read.
"""

from __future__ import annotations

import binascii
import io
import json
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import BinaryIO

import numpy as np

from facecodec.bitstream.coder import CorruptPayload, FrameCoder, decode_packet, encode_packet
from facecodec.bitstream.prior import Prior
from facecodec.bitstream.streams import Coded, Frame, StreamSpec, StreamTable
from facecodec.errors import FormatError, ModelMismatchError

MAGIC = b"\x89FCS"
VERSION = (1, 0)  # (major, minor): a reader refuses a newer major version

# chunk kinds
INTER = 0x01
INTRA = 0x02
SOURCE = 0x10
CROP = 0x11
END = 0x7F
ANCILLARY = range(0x40, 0x7F)  # unknown kinds in this range are skipped, others refused

MAX_HEADER = 65535
MAX_PAYLOAD = {INTER: 1 << 20, INTRA: 1 << 20, SOURCE: 16 << 20, CROP: 64, END: 64}
MAX_ANCILLARY = 1 << 20

IMAGE_CODECS = {1: "jpeg", 2: "webp", 3: "png"}


@dataclass(frozen=True)
class Header:
    """Everything a decoder must know before the first chunk."""

    table: StreamTable
    prior_id: str
    fps: Fraction = Fraction(15)
    crop_size: int = 256
    intra_period: int = 30
    packet_frames: int = 1
    n_sources: int = 0
    model_id: str = ""
    model_hash: bytes = b"\0" * 16
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.fps <= 0 or self.fps.numerator >= 1 << 32 or self.fps.denominator >= 1 << 32:
            raise ValueError(f"fps {self.fps} not representable")
        if not 1 <= self.packet_frames <= 255:
            raise ValueError("packet_frames must be in 1..255")
        if not 1 <= self.intra_period <= 65535:
            raise ValueError("intra_period must be in 1..65535")
        if not 1 <= self.crop_size <= 65535 or not 0 <= self.n_sources <= 255:
            raise ValueError("crop_size or n_sources out of range")
        if len(self.model_hash) != 16:
            raise ValueError("model_hash must be 16 bytes")

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


def _varint(n: int) -> bytes:
    """Unsigned LEB128."""
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF)."""
    return binascii.crc_hqx(data, 0xFFFF)


def chunk(kind: int, payload: bytes) -> bytes:
    """kind (1 byte) | payload length (LEB128) | payload | CRC-16 of all before it."""
    body = bytes([kind]) + _varint(len(payload)) + payload
    return body + struct.pack("<H", _crc16(body))


# -- events a reader yields ----------------------------------------------------------------
@dataclass
class SourceFrame:
    index: int
    codec: str
    width: int
    height: int
    image: bytes  # the encoded image, decoded by the receiver
    values: dict[str, np.ndarray]
    offset: int = 0
    nbytes: int = 0


@dataclass
class DecodedFrame:
    index: int
    values: dict[str, np.ndarray]
    intra: bool
    bits: dict[str, float]  # ideal code length per stream
    packet_bits: float  # this frame's share of its chunk, all bytes included
    held: bool = False  # tolerant mode: a lost frame, values repeat the last good one


@dataclass
class Crop:
    frame: int
    box: tuple[float, float, float]  # x0, y0, size in source pixels
    src_size: tuple[int, int]  # width, height of the source video


@dataclass
class Skipped:
    offset: int
    reason: str
    frames: int  # frames lost (held), known once the next intra packet is found


# -- writer --------------------------------------------------------------------------------
class FcsWriter:
    """Writes a ``.fcs`` stream incrementally to ``out`` (a file or any ``write`` sink).

    ``add_frame`` returns the bytes it wrote (empty while a packet of several frames
    is still filling): what a live sender would put on the wire.
    """

    def __init__(self, out: BinaryIO, header: Header, prior: Prior):
        if prior.id != header.prior_id:
            raise ValueError(f"header names prior {header.prior_id}, got {prior.id}")
        if prior.table != header.table:
            raise ValueError("the prior was fitted for another stream table")
        self.out, self.header, self.prior = out, header, prior
        self.coder = FrameCoder(prior)
        self.frames = 0
        self._pending: list[Coded] = []
        self._pending_intra = False
        self._force_intra = True
        self.bytes_written = 0
        self.frame_bits: list[dict[str, float]] = []
        self._emit(header.to_bytes())

    def _emit(self, data: bytes) -> bytes:
        self.out.write(data)
        self.bytes_written += len(data)
        return data

    def add_source(self, index: int, codec: str, width: int, height: int, image: bytes,
                   values: Frame) -> bytes:
        """A source frame: the encoded image plus its values, coded intra."""
        codes = {v: k for k, v in IMAGE_CODECS.items()}
        if codec not in codes:
            raise ValueError(f"image codec {codec!r} not in {sorted(codes)}")
        coded = self.header.table.quantize(values)
        payload, _ = encode_packet(FrameCoder(self.prior), [coded], first_intra=True)
        body = struct.pack("<BBHH", index, codes[codec], width, height)
        body += _varint(len(image)) + image + payload
        return self._emit(chunk(SOURCE, body))

    def add_crop(self, box: tuple[float, float, float], src_size: tuple[int, int]) -> bytes:
        """The face tube moved: applies from the next frame, which is coded intra."""
        out = self.flush()
        body = _varint(self.frames) + struct.pack("<fffHH", *box, *src_size)
        self._force_intra = True
        return out + self._emit(chunk(CROP, body))

    def request_intra(self) -> None:
        """Code the next frame intra (a receiver asked to resync, say)."""
        self._force_intra = True

    def add_frame(self, values: Frame) -> bytes:
        return self.add_coded(self.header.table.quantize(values))

    def add_coded(self, coded: Coded) -> bytes:
        intra = self._force_intra or self.frames % self.header.intra_period == 0
        out = b""
        if intra:
            out += self.flush()  # an intra frame always starts a packet
            self._pending_intra = True
            self._force_intra = False
        self._pending.append(coded)
        self.frames += 1
        if len(self._pending) >= self.header.packet_frames:
            out += self.flush()
        return out

    def flush(self) -> bytes:
        if not self._pending:
            return b""
        n = len(self._pending)
        first = self.frames - n
        payload, bits = encode_packet(self.coder, self._pending, self._pending_intra)
        head = _varint(first) if self._pending_intra else b""
        if self.header.packet_frames > 1:
            head += bytes([n])
        data = chunk(INTRA if self._pending_intra else INTER, head + payload)
        self.frame_bits.extend(bits)
        self._pending, self._pending_intra = [], False
        return self._emit(data)

    def close(self) -> bytes:
        """Flush the last packet and write the end chunk."""
        out = self.flush()
        return out + self._emit(chunk(END, struct.pack("<I", self.frames)))


# -- reader --------------------------------------------------------------------------------
class _Stream:
    """A read(n) source that counts its offset and never reads more than asked."""

    def __init__(self, src: BinaryIO, name: str | None):
        self.src, self.name, self.offset = src, name, 0
        self._chunk = bytearray()  # bytes read since begin(): what a resync re-scans

    def begin(self) -> None:
        self._chunk = bytearray()

    def recent(self) -> bytes:
        return bytes(self._chunk)

    def read(self, n: int, what: str) -> bytes:
        data = self.src.read(n) if n else b""
        self._chunk += data
        if len(data) < n:
            raise FormatError(f"truncated: {what} needs {n} bytes, {len(data)} left",
                              self.offset, self.name)
        self.offset += n
        return data

    def peek_eof(self) -> bool:
        """True at the end of the stream (consumes nothing otherwise)."""
        b = self.src.read(1)
        if not b:
            return True
        self.src = _Prepend(b, self.src)
        return False

    def varint(self, what: str, limit: int) -> tuple[int, bytes]:
        raw = bytearray()
        value = 0
        for shift in range(0, 35, 7):
            b = self.read(1, what)[0]
            raw.append(b)
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                break
        else:
            raise FormatError(f"{what}: varint longer than 5 bytes", self.offset, self.name)
        if value > limit:
            raise FormatError(f"absurd {what} {value} (limit {limit})",
                              self.offset - len(raw), self.name)
        return value, bytes(raw)


class _Prepend(io.RawIOBase):
    def __init__(self, head: bytes, src: BinaryIO):
        self.head, self.src = head, src

    def read(self, n: int = -1) -> bytes:
        if not self.head:
            return self.src.read(n)
        h, self.head = self.head[:n], self.head[n:]
        return h + (self.src.read(n - len(h)) if n - len(h) > 0 else b"")


def read_header(stream: _Stream) -> Header:
    start = stream.read(8, "file header")
    if start[:4] != MAGIC:
        raise FormatError(f"not a .fcs stream (magic {start[:4]!r}, want {MAGIC!r})", 0,
                          stream.name)
    major, minor = start[4], start[5]
    if major > VERSION[0]:
        raise FormatError(f"format version {major}.{minor} is newer than this decoder "
                          f"({VERSION[0]}.{VERSION[1]}): upgrade facecodec", 4, stream.name)
    (length,) = struct.unpack("<H", start[6:8])
    body = stream.read(length, "header body")
    (crc,) = struct.unpack("<I", stream.read(4, "header CRC"))
    if crc != zlib.crc32(start + body):
        raise FormatError("header CRC mismatch (corrupt header)", 8 + length, stream.name)
    try:
        return _parse_header(body)
    except (struct.error, ValueError, UnicodeDecodeError, IndexError) as e:
        raise FormatError(f"malformed header ({e})", 8, stream.name) from None


def _parse_header(b: bytes) -> Header:
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
    streams = []
    for _ in range(take(1)[0]):
        name = str8()
        count, lo, hi, bits, points, period = struct.unpack("<HffBBH", take(14))
        streams.append(StreamSpec(name, count, lo, hi, bits, bool(points), period))
    (ilen,) = struct.unpack("<H", take(2))
    info = json.loads(take(ilen).decode()) if ilen else {}
    return Header(StreamTable(tuple(streams)), prior_id, Fraction(num, den), crop, intra,
                  group, nsrc, model_id, model_hash, info)


class FcsReader:
    """Reads a ``.fcs`` stream incrementally.

    Args:
        src: binary stream (file, socket file, BytesIO) or bytes.
        prior: the prior to decode with; ``None`` looks up the header's prior id with
            ``prior_lookup``.
        tolerant: skip corrupt packets (holding the last good frame) and resume at the
            next intra packet, recording each skip in ``self.skipped``, instead of raising.
        model_id / model_hash: when given, the header must name this model.
    """

    def __init__(self, src: BinaryIO | bytes, name: str | None = None,
                 prior: Prior | None = None, prior_lookup=None, tolerant: bool = False,
                 model_id: str | None = None, model_hash: bytes | None = None):
        if isinstance(src, bytes | bytearray):
            src = io.BytesIO(bytes(src))
        self.stream = _Stream(src, name)
        self.name = name
        self.header = read_header(self.stream)
        self.header_bytes = self.stream.offset
        if model_id is not None and model_id != self.header.model_id:
            raise ModelMismatchError(f"stream was encoded with model {self.header.model_id!r}, "
                                     f"not {model_id!r}", 8, name)
        if model_hash is not None and model_hash != self.header.model_hash:
            raise ModelMismatchError(f"stream was encoded with other weights of model "
                                     f"{self.header.model_id!r}", 8, name)
        if prior is None:
            if prior_lookup is None:
                from facecodec.bitstream.prior import find_prior as prior_lookup
            prior = prior_lookup(self.header.prior_id)
            if prior is None:
                raise ModelMismatchError(f"no prior {self.header.prior_id!r} installed", 8, name)
        if prior.id != self.header.prior_id:
            raise ModelMismatchError(f"stream was coded with prior {self.header.prior_id!r}, "
                                     f"not {prior.id!r}", 8, name)
        if prior.table != self.header.table:
            raise ModelMismatchError("the stream table differs from the prior's", 8, name)
        self.prior = prior
        self.tolerant = tolerant
        self.coder = FrameCoder(prior)
        self.frames = 0
        self.ended = False
        self.skipped: list[Skipped] = []
        self.crops: list[Crop] = []
        self.chunk_bytes = {"source": 0, "frames": 0, "other": 0}
        self._last: dict[str, np.ndarray] | None = None

    def __iter__(self) -> Iterator[SourceFrame | DecodedFrame | Crop]:
        while not self.ended:
            if self.stream.peek_eof():
                if not self.tolerant:
                    raise FormatError("stream ends without an end chunk (truncated?)",
                                      self.stream.offset, self.name)
                self._skip(self.stream.offset, "stream ends without an end chunk", 0)
                return
            start = self.stream.offset
            self.stream.begin()
            try:
                kind, payload, nbytes = self._read_chunk()
                yield from self._handle(kind, payload, start, nbytes)
            except FormatError as e:
                if not self.tolerant:
                    raise
                yield from self._resync(start, e.problem)

    # -- chunks ---------------------------------------------------------------------------
    def _read_chunk(self) -> tuple[int, bytes, int]:
        start = self.stream.offset
        kind = self.stream.read(1, "chunk kind")[0]
        if kind in MAX_PAYLOAD:
            limit = MAX_PAYLOAD[kind]
        elif kind in ANCILLARY:
            limit = MAX_ANCILLARY
        else:
            raise FormatError(f"unknown chunk kind 0x{kind:02x}", start, self.name)
        length, raw = self.stream.varint("chunk length", limit)
        payload = self.stream.read(length, f"chunk 0x{kind:02x} payload")
        (crc,) = struct.unpack("<H", self.stream.read(2, "chunk CRC"))
        if crc != _crc16(bytes([kind]) + raw + payload):
            raise FormatError(f"CRC mismatch in chunk 0x{kind:02x}", start, self.name)
        return kind, payload, self.stream.offset - start

    def _handle(self, kind: int, payload: bytes, start: int, nbytes: int):
        if kind in (INTER, INTRA):
            self.chunk_bytes["frames"] += nbytes
            yield from self._frames(kind == INTRA, payload, start, nbytes)
        elif kind == SOURCE:
            self.chunk_bytes["source"] += nbytes
            yield self._source(payload, start, nbytes)
        elif kind == CROP:
            self.chunk_bytes["other"] += nbytes
            frame, raw = _varint_from(payload, start, self.name)
            if len(payload) - len(raw) != 16:
                raise FormatError("crop chunk has the wrong size", start, self.name)
            x0, y0, size, w, h = struct.unpack("<fffHH", payload[len(raw):])
            crop = Crop(frame, (x0, y0, size), (w, h))
            self.crops.append(crop)
            yield crop
        elif kind == END:
            self.chunk_bytes["other"] += nbytes
            if len(payload) != 4:
                raise FormatError("end chunk has the wrong size", start, self.name)
            (count,) = struct.unpack("<I", payload)
            if count != self.frames and not self.tolerant:
                raise FormatError(f"end chunk counts {count} frames, stream had {self.frames}",
                                  start, self.name)
            self.ended = True
        else:  # ancillary: skipped by design
            self.chunk_bytes["other"] += nbytes

    def _frames(self, intra: bool, payload: bytes, start: int, nbytes: int):
        pos = 0
        if intra:
            first, raw = _varint_from(payload, start, self.name)
            pos = len(raw)
            if first != self.frames:
                if first < self.frames or not self.tolerant:
                    raise FormatError(f"intra packet for frame {first}, expected {self.frames}",
                                      start, self.name)
                lost = first - self.frames  # frames lost to an earlier skip: hold them
                if self.skipped:
                    self.skipped[-1].frames += lost
                yield from self._hold(lost)
        n = 1
        if self.header.packet_frames > 1:
            if pos >= len(payload):
                raise FormatError("frame packet lacks its frame count", start, self.name)
            n = payload[pos]
            pos += 1
            if not 1 <= n <= self.header.packet_frames:
                raise FormatError(f"frame packet holds {n} frames, at most "
                                  f"{self.header.packet_frames}", start, self.name)
        try:
            coded, bits = decode_packet(self.coder, payload[pos:], n, intra)
        except (CorruptPayload, ValueError) as e:
            self.coder.reset()
            raise FormatError(f"corrupt frame packet ({e})", start, self.name) from None
        for c, b in zip(coded, bits, strict=True):
            values = self.header.table.dequantize(c)
            self._last = values
            yield DecodedFrame(self.frames, values, intra, b, nbytes * 8 / n)
            self.frames += 1
            intra = False

    def _source(self, payload: bytes, start: int, nbytes: int) -> SourceFrame:
        if len(payload) < 6:
            raise FormatError("source chunk too short", start, self.name)
        index, codec, w, h = struct.unpack("<BBHH", payload[:6])
        if codec not in IMAGE_CODECS:
            raise FormatError(f"unknown image codec {codec}", start, self.name)
        ilen, raw = _varint_from(payload[6:], start, self.name)
        pos = 6 + len(raw)
        if pos + ilen > len(payload):
            raise FormatError("source image runs past its chunk", start, self.name)
        image = payload[pos : pos + ilen]
        try:
            (coded,), _ = decode_packet(FrameCoder(self.prior), payload[pos + ilen :], 1, True)
        except (CorruptPayload, ValueError) as e:
            raise FormatError(f"corrupt source values ({e})", start, self.name) from None
        return SourceFrame(index, IMAGE_CODECS[codec], w, h, image,
                           self.header.table.dequantize(coded), start, nbytes)

    # -- tolerance ------------------------------------------------------------------------
    def _skip(self, offset: int, reason: str, frames: int) -> None:
        self.skipped.append(Skipped(offset, reason, frames))

    def _hold(self, n: int):
        for _ in range(n):
            if self._last is None:
                break
            yield DecodedFrame(self.frames, self._last, False, {}, 0.0, held=True)
            self.frames += 1

    def _resync(self, start: int, reason: str):
        """Drop everything up to the next valid intra packet, source or end chunk."""
        self._skip(start, reason, 0)
        self.coder.reset()
        # Re-read from one byte after the bad chunk's start, in bounded pieces.
        buf = bytearray(self.stream.recent()[1:])
        base = start + 1
        scanned, eof = 0, False
        while True:
            found, scanned = _scan(bytes(buf), scanned, eof)
            if found is not None or eof:
                break
            piece = self.stream.src.read(1 << 16)
            eof = not piece
            buf += piece
        if found is None:
            self.stream.offset = base + len(buf)
            self.ended = True
            return
        self.stream.src = _Prepend(bytes(buf[found:]), self.stream.src)
        self.stream.offset = base + found
        yield from ()


def _scan(buf: bytes, start: int, eof: bool) -> tuple[int | None, int]:
    """First offset from ``start`` where an intra, source or end chunk with a valid CRC
    starts, and where to resume scanning when more bytes arrive. A candidate that runs
    past the buffer is undecided until more bytes come (or, at ``eof``, invalid)."""
    for i in range(start, len(buf)):
        if buf[i] not in (INTRA, SOURCE, END):
            continue
        s = _Stream(io.BytesIO(buf[i:]), None)
        try:
            kind = s.read(1, "")[0]
            length, raw = s.varint("", MAX_PAYLOAD[kind])
        except FormatError as e:
            if e.problem.startswith("truncated") and not eof:
                return None, i
            continue
        if i + s.offset + length + 2 > len(buf):
            if not eof:
                return None, i
            continue
        payload = buf[i + s.offset : i + s.offset + length]
        (crc,) = struct.unpack("<H", buf[i + s.offset + length : i + s.offset + length + 2])
        if crc == _crc16(bytes([kind]) + raw + payload):
            return i, i
    return None, len(buf)


def _varint_from(b: bytes, offset: int, name: str | None) -> tuple[int, bytes]:
    """A varint at the start of a chunk payload; errors point at the chunk."""
    try:
        return _Stream(io.BytesIO(b), name).varint("varint", 1 << 32)
    except FormatError as e:
        raise FormatError(e.problem, offset, name) from None
