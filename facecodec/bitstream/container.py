"""The ``.fcs`` container: a header, then chunks (source frames, frame packets, crops, end).

Written and read incrementally: a writer emits each chunk as soon as it is complete (one
packet per frame by default, for latency); a reader takes bytes as they arrive (a file,
bytes, or an iterable of network packets) and yields what they decide. The byte layout
is specified in docs/format.md; this module is its reference implementation.

Loss resilience (format 2): every frame packet names its first frame and the frame its
deltas refer to, so a lost, duplicated, reordered or spliced packet is known. The reader
keeps the decoded state of recent frames and decodes a packet only from the exact state
it was coded against; a frame it cannot decode is concealed (the last good values held,
``DecodedFrame.held``), never rendered from a broken delta chain. The writer can make
frames that refer to an older frame (a *recovery point* every ``recovery_period`` frames,
or a frame the receiver acknowledged through a feedback channel: ``recover_from``), and
can send each recovery point twice (``redundancy``), so decoding resumes long before the
next intra frame.

Every malformed input raises :class:`facecodec.errors.FormatError` with the byte offset
of the problem (strict mode) or is skipped and reported (tolerant mode); every length,
count and frame number is bounded before anything is allocated.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from facecodec.bitstream.chunks import (
    CROP,
    END,
    FRAME_KINDS,
    INTER,
    INTER_REF,
    INTRA,
    MAX_VARINT_BYTES,
    SOURCE,
    Chunk,
    ChunkParser,
    Damage,
    chunk,
    read_varint,
    varint,
)
from facecodec.bitstream.coder import (
    CorruptPayload,
    FrameCoder,
    RangeDecoder,
    bytes_to_words,
    decode_packet,
    encode_packet,
)
from facecodec.bitstream.header import MAGIC, VERSION, Header, header_length, parse_header
from facecodec.bitstream.limits import MAX_SOURCE_SIDE
from facecodec.bitstream.prior import Prior
from facecodec.bitstream.streams import Coded, Frame
from facecodec.errors import FormatError, ModelMismatchError

__all__ = ["MAGIC", "VERSION", "Header", "FcsWriter", "FcsReader", "SourceFrame",
           "DecodedFrame", "Crop", "Skipped", "chunk", "INTER", "INTRA", "INTER_REF",
           "SOURCE", "CROP", "END", "MAX_REF", "IMAGE_CODECS"]

IMAGE_CODECS = {1: "jpeg", 2: "webp", 3: "png"}
MAX_REF = 255  # the farthest back a frame may refer (frames); the reader keeps that many
MAX_FRAME = (1 << 32) - 1  # frame numbers are u32, as the end chunk's count
MAX_GAP_S = 10.0  # a tolerant reader conceals at most this long a gap, then skips ahead
READ_BLOCK = 1 << 16

# Exceptions a corrupt range-coded payload can raise inside constriction or numpy
# (constriction 0.5.0 raises AssertionError for data invalid under the model).
_DECODE_ERRORS = (CorruptPayload, AssertionError, ValueError, OverflowError, RuntimeError,
                  IndexError, KeyError)


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
    held: bool = False  # concealed: lost or undecodable, the last good values repeat


@dataclass
class Crop:
    frame: int
    box: tuple[float, float, float]  # x0, y0, size in source pixels
    src_size: tuple[int, int]  # width, height of the source video


@dataclass
class Skipped:
    offset: int
    reason: str
    frames: int  # frames concealed (held) because of it
    not_shown: int = 0  # frames skipped: a gap over MAX_GAP_S, or nothing to hold yet


# -- writer --------------------------------------------------------------------------------
class FcsWriter:
    """Writes a ``.fcs`` stream incrementally to ``out`` (a file or any ``write`` sink).

    ``add_frame`` returns the bytes it wrote (empty while a packet of several frames
    is still filling): what a live sender would put on the wire.

    Args:
        recovery_period: every this many frames after an intra frame, a frame is coded
            against the previous recovery point instead of the previous frame, so that a
            receiver that lost a packet decodes again from there (0: off).
        redundancy: copies of each intra frame and recovery point sent again, just
            before the next packet (0 or 1), so losing one packet does not break the
            chain of recovery points.
    """

    def __init__(self, out: BinaryIO, header: Header, prior: Prior, *,
                 recovery_period: int = 0, redundancy: int = 0):
        if prior.id != header.prior_id:
            raise ValueError(f"header names prior {header.prior_id}, got {prior.id}")
        if prior.table != header.table:
            raise ValueError("the prior was fitted for another stream table")
        if not 0 <= recovery_period <= MAX_REF:
            raise ValueError(f"recovery_period must be in 0..{MAX_REF}")
        if redundancy not in (0, 1):
            raise ValueError("redundancy must be 0 or 1")
        self.out, self.header, self.prior = out, header, prior
        self.recovery_period, self.redundancy = recovery_period, redundancy
        self.coder = FrameCoder(prior)
        self.frames = 0
        self.closed = False
        self._pending: list[Coded] = []
        self._pending_ref = 0  # the first pending frame's reference: 0 intra, else distance
        self._force_intra = True
        self._recover_from: int | None = None
        self._anchor = 0  # the last intra frame or recovery point
        self._last_intra = 0
        self._states: dict[int, tuple[Coded, Coded]] = {}  # frame -> (indices, deltas)
        self._repeat: list[bytes] = []
        self.bytes_written = 0
        self.redundant_bytes = 0
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
        if not 0 <= index < max(self.header.n_sources, 1):
            raise ValueError(f"source slot {index} not in 0..{self.header.n_sources - 1}")
        if not (1 <= width <= MAX_SOURCE_SIDE and 1 <= height <= MAX_SOURCE_SIDE):
            raise ValueError(f"source image {width}x{height} above {MAX_SOURCE_SIDE}")
        coded = self.header.table.quantize(values)
        payload, _ = encode_packet(FrameCoder(self.prior), [coded], first_intra=True)
        body = struct.pack("<BBHH", index, codes[codec], width, height)
        body += varint(len(image)) + image + payload
        return self._emit(chunk(SOURCE, body))

    def add_crop(self, box: tuple[float, float, float], src_size: tuple[int, int]) -> bytes:
        """The face tube moved: applies from the next frame, which is coded intra."""
        out = self.flush()
        body = varint(self.frames) + struct.pack("<fffHH", *box, *src_size)
        self._force_intra = True
        return out + self._emit(chunk(CROP, body))

    def request_intra(self) -> None:
        """Code the next frame intra (a receiver asked to resync, say)."""
        self._force_intra = True

    def recover_from(self, frame: int) -> None:
        """A receiver lost packets but holds ``frame`` (its last correctly decoded frame):
        code the next frame against it, which costs far less than an intra frame (falls
        back to intra when ``frame`` is too old or unknown)."""
        self._recover_from = int(frame)

    def add_frame(self, values: Frame) -> bytes:
        return self.add_coded(self.header.table.quantize(values))

    def _reference(self, f: int) -> int:
        """Frame ``f``'s reference: 0 for intra, else how many frames back."""
        if self._force_intra or f % self.header.intra_period == 0:
            return 0
        if self._recover_from is not None:
            a, self._recover_from = self._recover_from, None
            return f - a if 0 < f - a <= MAX_REF and a in self._states else 0
        if self.recovery_period and (f - self._last_intra) % self.recovery_period == 0:
            return f - self._anchor if f - self._anchor <= MAX_REF else 0
        return 1

    def add_coded(self, coded: Coded) -> bytes:
        if self.closed:
            raise ValueError("the stream is closed")
        if self.frames >= MAX_FRAME:
            raise ValueError("stream too long: frame numbers are 32-bit")
        ref = self._reference(self.frames)
        out = b""
        if ref != 1:  # an intra frame or a recovery point always starts a packet
            out += self.flush()
            self._pending_ref = ref
            self._force_intra = False
            self._anchor = self.frames
            if ref == 0:
                self._last_intra = self.frames
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
        ref = self._pending_ref
        head = varint(first)
        kind = INTRA if ref == 0 else INTER if ref == 1 else INTER_REF
        if kind == INTER_REF:
            head += varint(ref)
        if ref:
            state = self._states[first - ref]
            head += bytes([state_check(state[0], self.header)])
            start_from(self.coder, state, ref)
        payload, bits = encode_packet(self.coder, self._pending, ref == 0)
        # the coder ends at the last frame's state; earlier frames of a packet are only
        # ever referred to by the next frame, which is in the packet
        self._states[self.frames - 1] = (self.coder.prev, dict(self.coder.prev_delta))
        prune_states(self._states, self.frames - 1 - MAX_REF)
        if self.header.packet_frames > 1:
            head += bytes([n])
        data = chunk(kind, head + payload)
        self.frame_bits.extend(bits)
        self._pending, self._pending_ref = [], 1
        out = self._emit_repeats()
        if ref != 1 and self.redundancy:
            self._repeat.append(data)
        return out + self._emit(data)

    def _emit_repeats(self) -> bytes:
        out = b"".join(self._repeat)
        self._repeat = []
        self.redundant_bytes += len(out)
        return self._emit(out) if out else b""

    def close(self) -> bytes:
        """Flush the last packet and write the end chunk."""
        if self.closed:
            raise ValueError("the stream is closed")
        out = self.flush() + self._emit_repeats()
        self.closed = True
        return out + self._emit(chunk(END, struct.pack("<I", self.frames)))


# -- reader --------------------------------------------------------------------------------
def _blocks(src: BinaryIO | bytes | bytearray | memoryview | Iterable[bytes],
            wanted=lambda: 8) -> Iterator[bytes]:
    """The input as byte blocks, each as soon as it is there: a file object with
    ``read1`` gives what one read returns, one with only ``read`` (which may block until
    it has all it was asked for) is asked for just what decides the next chunk."""
    if isinstance(src, bytes | bytearray | memoryview):
        data = bytes(src)
        for i in range(0, len(data), READ_BLOCK):
            yield data[i : i + READ_BLOCK]
        return
    if hasattr(src, "read"):
        read1 = getattr(src, "read1", None)
        while True:
            b = read1(READ_BLOCK) if read1 is not None else src.read(wanted())
            if not b:
                return
            yield bytes(b)
    for b in src:
        if not isinstance(b, bytes | bytearray | memoryview):
            raise TypeError(f"a stream packet must be bytes, got {type(b).__name__}")
        if len(b):
            yield bytes(b)


class FcsReader:
    """Reads a ``.fcs`` stream incrementally.

    Args:
        src: bytes, a binary file (or socket file), or an iterable of byte strings
            (packets as they arrive).
        prior: the prior to decode with; ``None`` looks up the header's prior id with
            ``prior_lookup``.
        tolerant: conceal what cannot be decoded (lost, damaged, duplicated, reordered
            or spliced packets) by holding the last good frame, resume as soon as a packet
            decodes from a state the reader holds, and record each problem in
            ``self.skipped``, instead of raising.
        model_id / model_hash: when given, the header must name this model.
    """

    def __init__(self, src: BinaryIO | bytes | Iterable[bytes], name: str | None = None,
                 prior: Prior | None = None, prior_lookup=None, tolerant: bool = False,
                 model_id: str | None = None, model_hash: bytes | None = None):
        self.name = name
        self.stream: ChunkParser | None = None
        self._header_need = 8
        self._blocks = _blocks(src, lambda: self.stream.wanted() if self.stream
                               else self._header_need)
        self.header = self._read_header()
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
        self._check = FrameCoder(prior)  # re-encodes each packet: only canonical bytes pass
        self.frames = 0  # the next frame to output
        self.ended = False
        self.skipped: list[Skipped] = []
        self.crops: list[Crop] = []
        self.sources_seen: set[int] = set()
        self.chunk_bytes = {"source": 0, "frames": 0, "redundant": 0, "other": 0}
        self.max_gap = max(1, math.ceil(MAX_GAP_S * float(self.header.fps)))
        self._states: dict[int, tuple[Coded, Coded]] = {}  # decoded frames' indices, deltas
        self._last: dict[str, np.ndarray] | None = None
        self._open_skip: Skipped | None = None  # the problem current concealment is due to
        self._eof = False

    @property
    def offset(self) -> int:
        return self.stream.offset

    @property
    def last_good(self) -> int | None:
        """The last frame decoded from received values: what a receiver tells the sender
        to code against after a loss (``FcsWriter.recover_from``)."""
        return max(self._states, default=None)

    def _read_header(self):
        buf = bytearray()
        need = 8
        while len(buf) < need:
            b = next(self._blocks, None)
            if b is None:
                raise FormatError(f"truncated: the file header needs {need} bytes, "
                                  f"{len(buf)} there", len(buf), self.name)
            buf += b
            if need == 8 and len(buf) >= 8:
                need = header_length(bytes(buf[:8]), self.name)
            self._header_need = max(1, need - len(buf))
        header = parse_header(bytes(buf[:need]), self.name)
        self.stream = ChunkParser(need, plausible=self._plausible)
        self.stream.feed(bytes(buf[need:]))
        return header

    def __iter__(self) -> Iterator[SourceFrame | DecodedFrame | Crop]:
        while not self.ended:
            for item in self.stream.chunks():
                if isinstance(item, Damage):
                    self._damage(item)
                else:
                    yield from self._guarded(item)
                if self.ended:
                    return
            if self._eof:
                break
            block = next(self._blocks, None)
            if block is None:
                self._eof = True
                self.stream.close()
            else:
                self.stream.feed(block)
        if not self.ended:
            if not self.tolerant:
                raise FormatError("stream ends without an end chunk (truncated?)",
                                  self.stream.offset, self.name)
            self._problem(self.stream.offset, "stream ends without an end chunk")

    # -- problems -------------------------------------------------------------------------
    def _problem(self, offset: int, reason: str) -> Skipped:
        s = Skipped(offset, reason, 0)
        self.skipped.append(s)
        self._open_skip = s
        return s

    def _damage(self, d: Damage) -> None:
        if not self.tolerant:
            raise FormatError(d.reason, d.offset, self.name)
        end = f"resumed at byte {d.resumed}" if d.resumed is not None else "to the end"
        self._problem(d.offset, f"{d.reason}; skipped {end}")

    def _guarded(self, ck: Chunk):
        try:
            yield from self._handle(ck)
        except FormatError as e:
            if not self.tolerant:
                raise
            self._problem(ck.offset, e.problem)

    def _plausible(self, kind: int, length: int, head: bytes) -> bool:
        """Can a resync candidate be a chunk of this stream? From its kind, its payload
        length and the first payload bytes that have arrived (True if they cannot tell)."""
        try:
            if kind in FRAME_KINDS:
                got = read_varint(head, 0)
                if got is None:
                    return len(head) < MAX_VARINT_BYTES and length > len(head)
                first = got[0]
                return got[1] < length and \
                    self.frames - MAX_REF <= first <= self.frames + self.max_gap
            if kind == SOURCE:
                if len(head) < 6:
                    return length > len(head) and (not head or head[0] < max(
                        self.header.n_sources, 1))
                slot, codec, w, h = struct.unpack_from("<BBHH", head)
                return length > 6 and slot < max(self.header.n_sources, 1) and \
                    codec in IMAGE_CODECS and 1 <= w <= MAX_SOURCE_SIDE and \
                    1 <= h <= MAX_SOURCE_SIDE
            if kind == END:
                if length != 4:
                    return False
                if len(head) < 4:
                    return True
                (count,) = struct.unpack("<I", head[:4])
                return self.frames <= count <= self.frames + self.max_gap
        except ValueError:
            return False
        return False

    # -- chunks ---------------------------------------------------------------------------
    def _handle(self, ck: Chunk):
        if ck.kind in FRAME_KINDS:
            yield from self._frames(ck)
        elif ck.kind == SOURCE:
            self.chunk_bytes["source"] += ck.nbytes
            src = self._source(ck)
            if self._last is None:  # concealment before the first frame shows a source
                self._last = src.values
            yield src
        elif ck.kind == CROP:
            self.chunk_bytes["other"] += ck.nbytes
            frame, pos = _varint_at(ck, 0)
            if len(ck.payload) - pos != 16:
                raise FormatError("crop chunk has the wrong size", ck.offset, self.name)
            x0, y0, size, w, h = struct.unpack("<fffHH", ck.payload[pos:])
            if not all(math.isfinite(v) for v in (x0, y0, size)) or size <= 0:
                raise FormatError("crop box is not finite and positive", ck.offset, self.name)
            crop = Crop(frame, (x0, y0, size), (w, h))
            self.crops.append(crop)
            yield crop
        elif ck.kind == END:
            self.chunk_bytes["other"] += ck.nbytes
            if len(ck.payload) != 4:
                raise FormatError("end chunk has the wrong size", ck.offset, self.name)
            (count,) = struct.unpack("<I", ck.payload)
            if not self.tolerant:
                if count != self.frames:
                    raise FormatError(f"end chunk counts {count} frames, stream had "
                                      f"{self.frames}", ck.offset, self.name)
            elif count > self.frames:
                self._problem(ck.offset, f"frames {self.frames}..{count - 1} lost")
                yield from self._conceal(count)
            self.ended = True
        else:  # ancillary: skipped by design
            self.chunk_bytes["other"] += ck.nbytes

    def _frames(self, ck: Chunk):
        p = ck.payload
        first, pos = _varint_at(ck, 0)
        kind = ck.kind
        ref = 0 if kind == INTRA else 1
        if kind == INTER_REF:
            ref, pos = _varint_at(ck, pos)
            if not 2 <= ref <= MAX_REF:
                raise FormatError(f"reference distance {ref} not in 2..{MAX_REF}",
                                  ck.offset, self.name)
        check = None
        if ref:
            if pos >= len(p):
                raise FormatError("frame packet lacks its reference check", ck.offset,
                                  self.name)
            check, pos = p[pos], pos + 1
        n = 1
        if self.header.packet_frames > 1:
            if pos >= len(p):
                raise FormatError("frame packet lacks its frame count", ck.offset, self.name)
            n, pos = p[pos], pos + 1
            if not 1 <= n <= self.header.packet_frames:
                raise FormatError(f"frame packet holds {n} frames, at most "
                                  f"{self.header.packet_frames}", ck.offset, self.name)
        if first + n - 1 > MAX_FRAME or (ref and first < ref):
            raise FormatError(f"frame number {first} out of range", ck.offset, self.name)
        end = first + n
        if end <= self.frames and all(f in self._states or f < self.frames - MAX_REF
                                      for f in range(first, end)):
            self.chunk_bytes["redundant"] += ck.nbytes  # a copy of frames already there
            return
        gap = first - self.frames
        if gap > 0 and not self.tolerant:
            raise FormatError(f"packet for frame {first}, expected {self.frames} "
                              f"(frames lost?)", ck.offset, self.name)
        if gap < 0 and end > self.frames and not self.tolerant:
            raise FormatError(f"packet for frame {first} overlaps frames already decoded",
                              ck.offset, self.name)
        self.chunk_bytes["frames" if end > self.frames else "redundant"] += ck.nbytes
        problem = None
        state = None
        if ref:
            state = self._states.get(first - ref)
            if state is None:
                problem = f"frame {first} refers to lost frame {first - ref}"
            elif state_check(state[0], self.header) != check:
                # coded against other values than ours: a packet of another stream
                # spliced in, or a desynchronised sender; decoding would give wrong values
                problem = (f"frame {first}: its reference check does not match frame "
                           f"{first - ref} (spliced or desynchronised packet)")
        if problem is None:
            try:
                coded, bits = self._decode(p[pos:], n, ref, state, first)
            except _DECODE_ERRORS as e:
                problem = f"corrupt frame packet ({e})"
        if problem is not None:
            if not self.tolerant:
                raise FormatError(problem, ck.offset, self.name)
            if gap > self.max_gap:
                # far ahead and not decodable: not credible, and concealing up to it
                # would emit frames for nothing
                self._problem(ck.offset, f"{problem}; frame number {first} is {gap} frames "
                                         f"ahead: packet dropped")
                return
            if self._open_skip is None or "reference check" in problem:
                self._problem(ck.offset, problem)
            yield from self._conceal(end)
            return
        if gap > 0:
            if self._open_skip is None:  # else the damage already reported lost them
                self._problem(ck.offset, f"frames {self.frames}..{first - 1} lost")
            yield from self._conceal(first)
        self._open_skip = None
        for i, (c, b) in enumerate(zip(coded, bits, strict=True)):
            f = first + i
            if f < self.frames:
                continue  # a late packet: it only restores the reference state
            values = self.header.table.dequantize(c)
            self._last = values
            yield DecodedFrame(f, values, ref == 0 and i == 0, b, ck.nbytes * 8 / n)
            self.frames = f + 1
        prune_states(self._states, self.frames - 1 - MAX_REF)

    def _decode(self, payload: bytes, n: int, ref: int, state, first: int):
        """Decode a packet's frames from the reference ``state``, store each frame's
        state, and check the bytes are the ones an encoder writes for these values (a
        payload that is padded or not fully used is corrupt)."""
        for coder in (self.coder, self._check):
            coder.reset()
            if state is not None:
                start_from(coder, state, ref)
        dec = RangeDecoder(bytes_to_words(payload))
        coded, bits, states = [], [], []
        for i in range(n):
            c, b = self.coder.decode_frame(dec, ref == 0 and i == 0)
            coded.append(c)
            bits.append(b)
            states.append((c, dict(self.coder.prev_delta)))
        again, _ = encode_packet(self._check, coded, ref == 0)
        if again != payload:
            raise CorruptPayload("the payload is not what an encoder writes for its values")
        for i, st in enumerate(states):
            self._states[first + i] = st
        return coded, bits

    def _conceal(self, upto: int):
        """Hold the last good values for frames ``self.frames .. upto - 1`` (a gap longer
        than ``max_gap`` is shown for ``max_gap`` frames, then skipped)."""
        n = upto - self.frames
        shown = min(n, self.max_gap)
        skip = self._open_skip or self._problem(self.stream.offset, "frames lost")
        for _ in range(shown):
            if self._last is None:
                break
            yield DecodedFrame(self.frames, self._last, False, {}, 0.0, held=True)
            self.frames += 1
            skip.frames += 1
        if self.frames < upto:  # nothing to hold yet, or a gap over max_gap
            skip.not_shown += upto - self.frames
            self.frames = upto

    def _source(self, ck: Chunk) -> SourceFrame:
        p = ck.payload
        if len(p) < 6:
            raise FormatError("source chunk too short", ck.offset, self.name)
        index, codec, w, h = struct.unpack("<BBHH", p[:6])
        if index >= max(self.header.n_sources, 1):
            raise FormatError(f"source slot {index} beyond the header's "
                              f"{self.header.n_sources}", ck.offset, self.name)
        if codec not in IMAGE_CODECS:
            raise FormatError(f"unknown image codec {codec}", ck.offset, self.name)
        if not (1 <= w <= MAX_SOURCE_SIDE and 1 <= h <= MAX_SOURCE_SIDE):
            raise FormatError(f"source image {w}x{h} (limit {MAX_SOURCE_SIDE})", ck.offset,
                              self.name)
        ilen, pos = _varint_at(ck, 6)
        if pos + ilen > len(p):
            raise FormatError("source image runs past its chunk", ck.offset, self.name)
        image = p[pos : pos + ilen]
        payload = p[pos + ilen :]
        try:
            (coded,), _ = decode_packet(FrameCoder(self.prior), payload, 1, True)
            again, _ = encode_packet(FrameCoder(self.prior), [coded], True)
            if again != payload:
                raise CorruptPayload("values not as an encoder writes them")
        except _DECODE_ERRORS as e:
            raise FormatError(f"corrupt source values ({e})", ck.offset, self.name) from None
        self.sources_seen.add(index)
        return SourceFrame(index, IMAGE_CODECS[codec], w, h, image,
                           self.header.table.dequantize(coded), ck.offset, ck.nbytes)


def start_from(coder: FrameCoder, state: tuple[Coded, Coded], ref: int) -> None:
    """Set a coder to continue from a reference frame's (indices, deltas), ``ref`` frames
    back: the own-delta predictor term is a one-frame delta, so none across a longer gap
    (docs/format.md, section 4). The deltas are copied: the coder updates them in place."""
    coder.prev = state[0]
    coder.prev_delta = dict(state[1]) if ref == 1 else {k: np.zeros_like(v)
                                                        for k, v in state[1].items()}


def prune_states(states: dict[int, tuple[Coded, Coded]], oldest: int) -> None:
    """Forget the states of frames before ``oldest``. Frames are stored in increasing
    order but for late copies (themselves within the window), so the oldest are first."""
    while states and next(iter(states)) < oldest:
        del states[next(iter(states))]


def state_check(q: Coded, header: Header) -> int:
    """One byte that identifies a frame's quantization indices: an inter packet carries
    its reference's, so a packet coded against other values (another stream's, a
    desynchronised sender's) is refused instead of decoded into wrong values (1 in 256
    such packets passes)."""
    crc = 0
    for name in header.table.names:
        crc = zlib.crc32(np.ascontiguousarray(q[name], dtype="<i8").tobytes(), crc)
    return crc & 0xFF


def _varint_at(ck: Chunk, pos: int) -> tuple[int, int]:
    """A varint inside a chunk payload; errors point at the chunk."""
    try:
        got = read_varint(ck.payload, pos)
    except ValueError as e:
        raise FormatError(str(e), ck.offset) from None
    if got is None:
        raise FormatError("chunk payload ends inside a varint", ck.offset)
    return got

