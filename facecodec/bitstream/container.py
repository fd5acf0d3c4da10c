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

Forward error correction (format 2.1, ``fec``): after every ``fec`` frame packets the
writer sends a parity chunk, the XOR of their bytes (:mod:`facecodec.bitstream.fec`); a
tolerant reader keeps the packets that arrive after a loss for up to ``max_delay`` frames
and, when the parity rebuilds the lost one, decodes them all in order, exactly as if
nothing had been lost. A parity that comes too late still restores the frames' states, so
the stream resumes at once instead of at the next recovery point.

Sound (format 2.2): Opus packets in audio chunks (:class:`AudioPacket`, ``add_audio``),
each placed by its first sample from frame 0's time, yielded by the reader as they come;
the codec itself is facecodec/audio.py (the bitstream does not decode them).

Paced sources (format 2.3, ``FcsWriter(source_rate=...)``, ``add_source(paced=True)``):
a source chunk's payload cut into source parts that go out between frame packets at a
given rate, so a thin link carries the first face first and the sharper sources after it,
within a budget; the reader puts the parts back together and yields the source when its
last part arrives.

Every malformed input raises :class:`facecodec.errors.FormatError` with the byte offset
of the problem (strict mode) or is skipped and reported (tolerant mode); every length,
count and frame number is bounded before anything is allocated.
"""

from __future__ import annotations

import dataclasses
import math
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from facecodec.bitstream.chunks import (
    AUDIO,
    AUDIO_ORIGIN,
    AUDIO_SHORT,
    BASE,
    CROP,
    END,
    FRAME_KINDS,
    INTER,
    INTER_REF,
    INTRA,
    MAX_AUDIO_DATA,
    MAX_BASE_DATA,
    MAX_FEC,
    MAX_PARITY_BODY,
    MAX_PART_DATA,
    MAX_PARTS,
    MAX_PAYLOAD,
    MAX_VARINT_BYTES,
    PARITY,
    SOURCE,
    SOURCE_PART,
    Chunk,
    ChunkParser,
    Damage,
    chunk,
    read_varint,
    short_audio_start,
    short_audio_stored,
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
from facecodec.bitstream.fec import Parity, parity_payload, parse_parity, rebuild, verify
from facecodec.bitstream.header import MAGIC, VERSION, Header, header_length, parse_header
from facecodec.bitstream.limits import MAX_REF, MAX_SOURCE_SIDE
from facecodec.bitstream.prior import Prior, find_prior
from facecodec.bitstream.protection import Protection
from facecodec.bitstream.streams import Coded, Frame
from facecodec.errors import FormatError, ModelMismatchError

__all__ = ["MAGIC", "VERSION", "Header", "FcsWriter", "FcsReader", "SourceFrame",
           "DecodedFrame", "Crop", "Skipped", "chunk", "INTER", "INTRA", "INTER_REF",
           "SOURCE", "SOURCE_PART", "CROP", "END", "PARITY", "AUDIO", "AUDIO_SHORT", "MAX_REF",
           "MAX_FEC", "IMAGE_CODECS", "AudioPacket", "AUDIO_INFO", "AUDIO_CLOCK", "CODEC2_MODES",
           "codec2_info", "codec2_frame", "audio_declared", "BASE", "BasePacket", "base_info",
           "base_declared", "audio_chunk"]

IMAGE_CODECS = {1: "jpeg", 2: "webp", 3: "png"}
PART_BYTES = 1024  # a paced source's part: framing (~8 bytes) under 1 %
MIN_PART_BYTES = 128  # within a thin budget, parts of half a second of it, down to this
assert PART_BYTES <= MAX_PART_DATA
MAX_FRAME = (1 << 32) - 1  # frame numbers are u32, as the end chunk's count
MAX_RECOVERY_COPIES = 4  # frames a writer codes against one recovery request's frame
MAX_GAP_S = 10.0  # a tolerant reader conceals at most this long a gap, then skips ahead
READ_BLOCK = 1 << 16
# forward error correction, reader side: what it keeps to rebuild a lost packet
KEEP_PACKETS = 2 * MAX_FEC + 8  # recent frame packets (parity members), by frame number
MAX_WAIT_PACKETS = 2 * MAX_FEC  # packets held back after a gap while a repair may come
MAX_WAIT_BYTES = 16 * MAX_PARITY_BODY
MAX_PENDING_PARITIES = 4  # parities that arrived before enough of their group (reordering)

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


@dataclass(frozen=True)
class AudioPacket:
    """One packet of the call's sound (format 2.2: Opus; 2.4: Codec 2; facecodec/audio.py):
    ``start`` is its first sample at 48 kHz counted from the first frame's time (negative for the
    encoder's look-ahead at the very start), ``data`` the packet."""

    start: int
    data: bytes


AUDIO_INFO = {"codec": "opus", "rate": 48000, "channels": 1}
"""What a header's ``info["audio"]`` says of a stream with Opus sound (format 2.2)."""
AUDIO_CLOCK = 48000  # packets' ``start`` is counted at this rate, whatever the codec
CODEC2_MODES = (3200, 2400, 1600, 1300)
"""Codec 2's bit rates a stream may declare (format 2.4; :func:`codec2_info`)."""


def codec2_info(mode: int) -> dict:
    """``info["audio"]`` of a stream whose sound is Codec 2 at ``mode`` bit/s (format 2.4:
    the narrowband speech codec for budgets too thin for Opus)."""
    return {"codec": "codec2", "mode": int(mode), "rate": AUDIO_CLOCK, "channels": 1}


def codec2_frame(mode: int) -> tuple[int, float]:
    """A Codec 2 frame of ``mode`` bit/s in a stream (format 2.4, section 2.3): its bytes
    (padded to whole bytes: 8, 6, 8, 7) and its seconds (20 ms from 2400 bit/s up, 40 ms
    below)."""
    seconds = 0.02 if mode >= 2400 else 0.04
    return math.ceil(mode * seconds / 8), seconds


@dataclass(frozen=True)
class BasePacket:
    """One frame of the base layer (format 2.5, issue 20): ``data`` is the AV1 temporal
    unit (OBUs, no temporal delimiter) of frame ``frame`` of the face tube, coded at the
    header's ``info["base"]`` side and CRF; the bitstream does not decode it."""

    frame: int
    data: bytes


BASE_SIDES = (64, 96, 128, 160, 192, 224, 256)
"""The sides a base layer may be coded at (multiples of 32 up to the tube's 256)."""


def base_info(side: int, crf: int) -> dict:
    """``info["base"]`` of a stream with a base layer of ``side`` pixels at ``crf``."""
    if side not in BASE_SIDES or not 0 <= crf <= 63:
        raise ValueError(f"a base layer is {BASE_SIDES} px at CRF 0..63, got {side} / {crf}")
    return {"codec": "av1", "side": int(side), "crf": int(crf)}


def base_declared(info: dict) -> dict | None:
    """The header's base-layer declaration if it is one this reader knows, else None
    (the stream is then read without its base layer)."""
    base = info.get("base")
    if not isinstance(base, dict) or set(base) != {"codec", "side", "crf"}:
        return None
    side, crf = base["side"], base["crf"]
    if base["codec"] != "av1" or type(side) is not int or type(crf) is not int:
        return None
    return base if side in BASE_SIDES and 0 <= crf <= 63 else None


def audio_declared(info: dict) -> bool:
    """Whether a header's ``info`` declares sound this reader knows (anything else: the
    stream is read without its sound)."""
    audio = info.get("audio")
    return audio == AUDIO_INFO or any(audio == codec2_info(m) for m in CODEC2_MODES)


def audio_chunk(packet: AudioPacket, previous: int) -> bytes:
    """The chunk of an audio packet written after one at ``previous`` (``-AUDIO_ORIGIN -
    1`` before the first): a short audio chunk (format 2.6) when it can carry the start
    (Codec 2's are on its 20-ms grid), else a full one (section 2.3)."""
    short = short_audio_stored(packet.start, previous)
    if short is None:
        return chunk(AUDIO, varint(packet.start + AUDIO_ORIGIN) + packet.data)
    return chunk(AUDIO_SHORT, struct.pack("<H", short) + packet.data)


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
        recovery_anchor: what a recovery point is coded against: ``"previous"`` (the
            previous recovery point or intra frame: a chain, cheapest, but a lost recovery
            point breaks every later one up to the next intra frame) or ``"intra"`` (the
            last intra frame: a lost recovery point costs only its own period, for the bits
            of a longer reference distance).
        redundancy: copies of each intra frame and recovery point sent again, just
            before the next packet (0 or 1), so losing one packet does not break the
            chain of recovery points.
        repeat_intra: copies of each intra frame sent again (0..2; ``redundancy`` sends
            one). With recovery points coded against the intra frame, a lost
            intra frame is the one loss that freezes the picture until the next one
            (2 s); a copy costs about 4 inter frames per intra period (bench/loss.py).
        fec: after every this many frame packets (2..16; 0: off), a parity chunk from
            which a receiver rebuilds any one of them that was lost (format 2.1). The
            header's ``info`` then says ``"fec": G``, which tells a reader how long to
            hold frames back for a repair. A group with a packet longer than
            ``MAX_PARITY_BODY`` (2 KiB: many frames per packet) gets no parity.
        source_rate: bytes per frame that sources given with ``add_source(paced=True)``
            may use (format 2.3): they wait in order and go out in parts of
            ``PART_BYTES`` between frame packets as that allowance builds up (it builds up
            only while one waits); ``close`` sends what is left before the end chunk.
        all_in_rate: instead of ``source_rate``, a budget in bytes per frame for
            everything the writer emits (issue #17's ``--kbps``): paced sources get what
            the rest (header, frames, sound, crops, unpaced sources) leaves of it, as
            measured, so a costly frame delays the sources instead of breaking the
            budget. Parts then hold half a second of the budget at most (a 1-KB part is
            1.6 s of 5 kbps: one would overshoot a 10-s window where the frames run
            close to the budget). ``close`` sends the source under way and drops those
            not started (``sources_dropped``). 0: off.
    """

    def __init__(self, out: BinaryIO, header: Header, prior: Prior, *,
                 recovery_period: int = 0, redundancy: int = 0, fec: int = 0,
                 recovery_anchor: str = "previous", repeat_intra: int = 0,
                 source_rate: float = 0.0, all_in_rate: float = 0.0):
        if prior.id != header.prior_id:
            raise ValueError(f"header names prior {header.prior_id}, got {prior.id}")
        if prior.table != header.table:
            raise ValueError("the prior was fitted for another stream table")
        # the protection's fields are checked in one place (ValueError naming the field)
        Protection(recovery_period, recovery_anchor, redundancy, repeat_intra, fec)
        self.recovery_anchor = recovery_anchor
        if fec:
            header = dataclasses.replace(header, info={**header.info, "fec": fec})
        self.out, self.header, self.prior = out, header, prior
        self.fec = fec
        self._group: list[tuple[int, int, bytes]] = []  # (first frame, frames, bytes)
        self.parity_bytes = 0
        self.parities_skipped = 0  # groups with a packet too long for a parity
        self.recovery_period, self.redundancy = recovery_period, redundancy
        self.repeat_intra = int(repeat_intra)
        self.coder = FrameCoder(prior)
        self.frames = 0
        self.closed = False
        self._pending: list[Coded] = []
        self._pending_ref = 0  # the first pending frame's reference: 0 intra, else distance
        self._force_intra = True
        self._recover_from: int | None = None
        self._recover_left = 0  # frames still to code against _recover_from
        self.chains = 1  # set_chains
        self._chained = self._pending_chained = False  # a chain's frame, not a recovery
        self._anchor = 0  # the last intra frame or recovery point
        self._last_intra = 0
        self._states: dict[int, tuple[Coded, Coded]] = {}  # frame -> (indices, deltas)
        self._repeat: list[bytes] = []
        self.bytes_written = 0
        self.redundant_bytes = 0
        self.audio_bytes = 0
        self._audio_start = -AUDIO_ORIGIN - 1
        self.base_bytes = 0
        self._base_frame = -1
        if not (math.isfinite(source_rate) and source_rate >= 0):
            raise ValueError(f"source_rate must be a finite number >= 0, got {source_rate!r}")
        self.source_rate = float(source_rate)
        if not (math.isfinite(all_in_rate) and all_in_rate >= 0):
            raise ValueError(f"all_in_rate must be a finite number >= 0, got {all_in_rate!r}")
        if all_in_rate and source_rate:
            raise ValueError("give source_rate or all_in_rate, not both")
        self.all_in_rate = float(all_in_rate)
        self.part_bytes = PART_BYTES
        if all_in_rate:
            half_second = int(all_in_rate * float(header.fps) / 2)
            self.part_bytes = min(PART_BYTES, max(MIN_PART_BYTES, half_second))
        self._others_paid = 0  # bytes not of paced sources, as of the last allowance
        self._paced: list[list] = []  # [slot, body, next part, parts] in sending order
        self._credit = 0.0
        self.paced_bytes = 0  # source parts written
        self.sources_dropped = 0  # paced sources a budget left unsent at close
        self.frame_bits: list[dict[str, float]] = []
        self._emit(header.to_bytes())

    def _emit(self, data: bytes) -> bytes:
        self.out.write(data)
        self.bytes_written += len(data)
        return data

    @property
    def sources_waiting(self) -> int:
        """Paced sources queued or under way (not yet wholly written)."""
        return len(self._paced)

    def add_source(self, index: int, codec: str, width: int, height: int, image: bytes,
                   values: Frame, paced: bool = False) -> bytes:
        """A source frame: the encoded image plus its values, coded intra. Sent now, or
        with ``paced`` queued and sent in parts within ``source_rate`` (format 2.3). Either
        way it replaces a source of the same slot still waiting to go out."""
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
        if len(body) > MAX_PAYLOAD[SOURCE]:
            raise ValueError(f"source chunk of {len(body)} bytes above {MAX_PAYLOAD[SOURCE]}")
        self._paced = [q for q in self._paced if q[0] != index]
        # (a source too big for MAX_PARTS parts of that size gets larger parts)
        size = max(self.part_bytes, -(-len(body) // MAX_PARTS))
        parts = -(-len(body) // size)
        if paced and parts > 1:
            if self.source_rate <= 0 and self.all_in_rate <= 0:
                raise ValueError("a paced source needs a source_rate or all_in_rate above 0")
            self._paced.append([index, body, 0, parts, size])
            return b""
        return self._emit(chunk(SOURCE, body))

    def _pace(self, force: bool = False) -> bytes:
        """The parts of the waiting sources that this frame's allowance pays for (all of
        them with ``force``)."""
        others = self.bytes_written - self.paced_bytes
        spent, self._others_paid = others - self._others_paid, others
        if not self._paced:
            self._credit = 0.0  # an allowance is not saved up for later sources
            return b""
        # a budget: what the frame's share leaves after everything else sent since the
        # last frame (a debt, e.g. an intra frame's, is paid before a part goes out)
        self._credit += self.all_in_rate - spent if self.all_in_rate else self.source_rate
        out = b""
        while self._paced:
            q = self._paced[0]
            slot, body, k, parts, size = q
            data = chunk(SOURCE_PART, bytes([slot]) + varint(k) + varint(parts)
                         + body[k * size:(k + 1) * size])
            if len(data) > self._credit and not force:
                break
            self._credit -= len(data)
            self.paced_bytes += len(data)
            out += self._emit(data)
            q[2] += 1
            if q[2] == parts:
                self._paced.pop(0)
        return out

    def add_crop(self, box: tuple[float, float, float], src_size: tuple[int, int]) -> bytes:
        """The face tube moved: applies from the next frame, which is coded intra."""
        out = self.flush()
        body = varint(self.frames) + struct.pack("<fffHH", *box, *src_size)
        self._force_intra = True
        return out + self._emit(chunk(CROP, body))

    def add_audio(self, packet: AudioPacket) -> bytes:
        """A packet of the sound; the header must declare it (:func:`audio_declared`) and
        packets come in time order. Audio goes out as it is made,
        between frame packets, so a live receiver plays it with the frames."""
        if not audio_declared(self.header.info):
            raise ValueError("the header declares no audio (info['audio'])")
        if not 1 <= len(packet.data) <= MAX_AUDIO_DATA:
            raise ValueError(f"an audio packet holds 1..{MAX_AUDIO_DATA} bytes")
        if packet.start < -AUDIO_ORIGIN or packet.start <= self._audio_start:
            raise ValueError("audio packets must start after -1 s and in time order")
        data = audio_chunk(packet, self._audio_start)
        self._audio_start = packet.start
        self.audio_bytes += len(data)
        return self._emit(data)

    def add_base(self, packet: BasePacket) -> bytes:
        """A frame of the base layer; the header must declare it (:func:`base_info`) and
        frames come in order, each at most once. It goes out as it is made, beside the
        frame's packet."""
        if base_declared(self.header.info) is None:
            raise ValueError("the header declares no base layer (info['base'])")
        if not 1 <= len(packet.data) <= MAX_BASE_DATA:
            raise ValueError(f"a base-layer frame holds 1..{MAX_BASE_DATA} bytes")
        if packet.frame <= self._base_frame:
            raise ValueError("base-layer frames must come in order, each once")
        self._base_frame = packet.frame
        data = chunk(BASE, varint(packet.frame) + packet.data)
        self.base_bytes += len(data)
        return self._emit(data)

    def request_intra(self) -> None:
        """Code the next frame intra (a receiver asked to resync, say)."""
        self._force_intra = True

    def recover_from(self, frame: int, copies: int = 1) -> None:
        """A receiver lost packets but holds ``frame`` (its last correctly decoded frame):
        code the next frame against it, which costs far less than an intra frame (falls
        back to intra when ``frame`` is too old or unknown). ``copies`` > 1: the next
        ``copies`` frames are all coded against it, so that the receiver resumes even if
        the first of them is lost as well (each is a recovery point of its own)."""
        if not 1 <= copies <= MAX_RECOVERY_COPIES:
            raise ValueError(f"copies must be in 1..{MAX_RECOVERY_COPIES}, got {copies!r}")
        self._recover_from, self._recover_left = int(frame), int(copies)

    def set_chains(self, chains: int) -> None:
        """Code each frame against the one ``chains`` back (1: the previous, the default;
        2: two chains of frames, even and odd, on a lossy link): a lost packet then spoils
        only its own chain until a recovery frame, and the receiver keeps drawing every
        other frame instead of freezing. Each frame then codes two frames' motion (more
        bits) and is a reference packet (format 2.0, kind 0x03: 2 bytes more). Only with
        one frame per packet."""
        if chains not in (1, 2):
            raise ValueError(f"chains must be 1 or 2, got {chains!r}")
        if chains > 1 and self.header.packet_frames != 1:
            raise ValueError("two chains need one frame per packet")
        self.chains = int(chains)

    def add_frame(self, values: Frame) -> bytes:
        return self.add_coded(self.header.table.quantize(values))

    def _reference(self, f: int) -> int:
        """Frame ``f``'s reference: 0 for intra, else how many frames back."""
        if self._force_intra or f % self.header.intra_period == 0:
            self._recover_from = None  # an intra frame resumes the receiver as well
            return 0
        if self._recover_from is not None:
            a = self._recover_from
            self._recover_left -= 1
            if self._recover_left <= 0:
                self._recover_from = None
            if 0 < f - a <= MAX_REF and a in self._states:
                return f - a
            self._recover_from = None  # too old or unknown: this intra frame serves
            return 0
        if self.recovery_period and (f - self._last_intra) % self.recovery_period == 0:
            anchor = self._last_intra if self.recovery_anchor == "intra" else self._anchor
            return f - anchor if f - anchor <= MAX_REF else 0
        if self.chains > 1 and f - self.chains >= self._last_intra:
            self._chained = True  # an ordinary frame of its chain: no recovery point
            return self.chains
        return 1

    def add_coded(self, coded: Coded) -> bytes:
        if self.closed:
            raise ValueError("the stream is closed")
        if self.frames >= MAX_FRAME:
            raise ValueError("stream too long: frame numbers are 32-bit")
        self._chained = False
        ref = self._reference(self.frames)
        out = self._pace()
        if ref != 1:  # an intra frame or a recovery point always starts a packet
            out += self.flush()
            self._pending_ref, self._pending_chained = ref, self._chained
            self._force_intra = False
            if not self._chained:
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
        chained, self._pending_chained = self._pending_chained, False
        self._pending, self._pending_ref = [], 1
        out = self._emit_repeats()
        copies = self.redundancy if ref != 1 and not chained else 0
        if ref == 0:
            copies = max(copies, self.repeat_intra)
        self._repeat += [data] * copies
        out += self._emit(data)
        if self.fec:
            self._group.append((first, n, data))
            if len(self._group) >= self.fec:
                out += self._emit_parity()
        return out

    def _emit_parity(self) -> bytes:
        """The parity of the packets sent since the last one (copies are not members)."""
        group, self._group = self._group, []
        if not group:
            return b""
        if max(len(b) for *_, b in group) > MAX_PARITY_BODY:
            self.parities_skipped += 1
            return b""
        data = chunk(PARITY, parity_payload(group, self.header.packet_frames))
        self.parity_bytes += len(data)
        return self._emit(data)

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
        out += self._emit_parity()  # the last group, however short
        if self.all_in_rate:
            # within a budget, the sources not started by the end are not sent: the
            # receiver drew without them (the one under way is finished: a part of a
            # source is no source)
            started = [q for q in self._paced if q[2] > 0]
            self.sources_dropped = len(self._paced) - len(started)
            self._paced = started
        out += self._pace(force=True)  # a file holds every source it was given
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
        max_delay: tolerant mode, a stream with parity chunks (format 2.1): the most
            frames a packet that arrives after a loss is held back, waiting for the
            parity that may rebuild the lost one (then all come out decoded, in order).
            ``None`` (default): the stream's group less one frame (``fec * packet_frames
            - 1``, from the header's ``info``), 0 for a stream without parity chunks;
            0: never wait (a late repair still restores the stream's state, so it resumes
            at the next packet). At most ``MAX_REF``. Frames are output in order, so a
            live receiver shows them up to this many frames late while a repair is open.
    """

    def __init__(self, src: BinaryIO | bytes | Iterable[bytes], name: str | None = None,
                 prior: Prior | None = None, prior_lookup=None, tolerant: bool = False,
                 model_id: str | None = None, model_hash: bytes | None = None,
                 max_delay: int | None = None):
        if max_delay is not None and not (isinstance(max_delay, int) and not isinstance(
                max_delay, bool) and 0 <= max_delay <= MAX_REF):
            raise ValueError(f"max_delay must be None or an integer in 0..{MAX_REF}, got "
                             f"{max_delay!r}")
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
            lookup = find_prior if prior_lookup is None else prior_lookup
            prior = lookup(self.header.prior_id)
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
        self._assembly: dict[int, _Assembly] = {}  # slot -> a paced source's parts so far
        self.chunk_bytes = {"source": 0, "frames": 0, "redundant": 0, "parity": 0,
                            "audio": 0, "base": 0, "other": 0}
        self.audio = audio_declared(self.header.info)  # format 2.2 sound (2.4: Codec 2)
        self._audio_start = -AUDIO_ORIGIN - 1
        self.base = base_declared(self.header.info)  # format 2.5 base layer
        self._base_frame = -1
        self.max_gap = max(1, math.ceil(MAX_GAP_S * float(self.header.fps)))
        self._states: dict[int, tuple[Coded, Coded]] = {}  # decoded frames' indices, deltas
        self._last: dict[str, np.ndarray] | None = None
        self._open_skip: Skipped | None = None  # the problem current concealment is due to
        self._eof = False
        # forward error correction (format 2.1)
        fec = self.header.info.get("fec")
        self.fec = fec if type(fec) is int and 2 <= fec <= MAX_FEC else 0
        self.max_delay = max_delay
        self.repaired = 0  # packets rebuilt from a parity
        self._kept: dict[int, Chunk] = {}  # first frame -> recent frame packet (members)
        self._waiting: dict[int, tuple[Chunk, _Head]] = {}  # after a gap, by first frame
        self._parities: list[tuple[Parity, Chunk]] = []  # came before enough members

    @property
    def offset(self) -> int:
        return self.stream.offset

    @property
    def delay(self) -> int:
        """Frames a packet after a loss is held back for a repair (0: none; see
        ``max_delay``)."""
        if not self.tolerant:
            return 0
        if self.max_delay is not None:
            return self.max_delay
        return min(self.fec * self.header.packet_frames - 1, MAX_REF) if self.fec else 0

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

    def __iter__(self) -> Iterator[SourceFrame | DecodedFrame | Crop | AudioPacket]:
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
            yield from self._release(force=True)  # what was held back for a repair
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
            if kind == PARITY:
                got = read_varint(head, 0)
                if got is None:
                    return len(head) < MAX_VARINT_BYTES and length > len(head)
                return got[1] < length and \
                    self.frames - MAX_REF <= got[0] <= self.frames + self.max_gap
            if kind == AUDIO:
                got = read_varint(head, 0)
                if got is None:
                    return self.audio and len(head) < MAX_VARINT_BYTES and length > len(head)
                # within a second of where the frames are, after the last packet
                ahead = (self.frames + self.max_gap) / float(self.header.fps) + 1.0
                return self.audio and got[1] < length and \
                    self._audio_start < got[0] - AUDIO_ORIGIN <= ahead * AUDIO_CLOCK
            if kind == AUDIO_SHORT:
                if len(head) < 2:
                    return self.audio and length > len(head)
                ahead = (self.frames + self.max_gap) / float(self.header.fps) + 1.0
                start = short_audio_start(struct.unpack_from("<H", head)[0], self._audio_start)
                return self.audio and length > 2 and \
                    self._audio_start < start <= ahead * AUDIO_CLOCK
            if kind == BASE:
                got = read_varint(head, 0)
                if got is None:
                    return self.base is not None and len(head) < MAX_VARINT_BYTES and \
                        length > len(head)
                return self.base is not None and got[1] < length and \
                    self._base_frame < got[0] <= self.frames + self.max_gap
            if kind == SOURCE:
                if len(head) < 6:
                    return length > len(head) and (not head or head[0] < max(
                        self.header.n_sources, 1))
                slot, codec, w, h = struct.unpack_from("<BBHH", head)
                return length > 6 and slot < max(self.header.n_sources, 1) and \
                    codec in IMAGE_CODECS and 1 <= w <= MAX_SOURCE_SIDE and \
                    1 <= h <= MAX_SOURCE_SIDE
            if kind == SOURCE_PART:
                return length > 3 and (not head or head[0] < max(self.header.n_sources, 1))
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
            yield from self._packet(ck)
        elif ck.kind == PARITY:
            self.chunk_bytes["parity"] += ck.nbytes
            yield from self._parity(ck)
        elif ck.kind in (SOURCE, SOURCE_PART):
            self.chunk_bytes["source"] += ck.nbytes
            src = self._source(ck) if ck.kind == SOURCE else self._source_part(ck)
            if src is not None:
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
        elif ck.kind in (AUDIO, AUDIO_SHORT):
            self.chunk_bytes["audio"] += ck.nbytes
            packet = self._audio(ck)
            if packet is not None:
                yield packet
        elif ck.kind == BASE:
            self.chunk_bytes["base"] += ck.nbytes
            packet = self._base(ck)
            if packet is not None:
                yield packet
        elif ck.kind == END:
            self.chunk_bytes["other"] += ck.nbytes
            yield from self._release(force=True)  # no repair comes after the end
            if self._assembly:
                slot, a = next(iter(self._assembly.items()))
                self._assembly.clear()
                # a writer sends every part before its end chunk
                e = FormatError(f"source slot {slot}: {a.next} of {a.parts} parts before "
                                "the end", a.offset, self.name)
                if not self.tolerant:
                    raise e
                self._problem(a.offset, e.problem)
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

    def _audio(self, ck: Chunk) -> AudioPacket | None:
        """An audio chunk, checked: declared by the header, in time order (a duplicate or
        a reordered one is dropped in tolerant mode: its moment has passed)."""
        if not self.audio:
            if self.tolerant:
                return None
            raise FormatError("audio chunk in a stream whose header declares no audio",
                              ck.offset, self.name)
        if ck.kind == AUDIO:
            stored, pos = _varint_at(ck, 0)
            start = stored - AUDIO_ORIGIN
        elif len(ck.payload) < 2:
            raise FormatError("short audio chunk without its start", ck.offset, self.name)
        else:
            pos = 2
            start = short_audio_start(struct.unpack_from("<H", ck.payload)[0], self._audio_start)
        if pos >= len(ck.payload) or len(ck.payload) - pos > MAX_AUDIO_DATA:
            raise FormatError(f"audio chunk holds 0 or more than {MAX_AUDIO_DATA} bytes",
                              ck.offset, self.name)
        if start <= self._audio_start:
            if self.tolerant:
                return None
            raise FormatError(f"audio packet at sample {start} is not after the previous "
                              f"one ({self._audio_start})", ck.offset, self.name)
        self._audio_start = start
        return AudioPacket(start, bytes(ck.payload[pos:]))

    def _base(self, ck: Chunk) -> BasePacket | None:
        """A base-layer chunk, checked: declared by the header, frames in order (a
        duplicate or a late one is dropped in tolerant mode), within reach of the frames."""
        if self.base is None:
            if self.tolerant:
                return None
            raise FormatError("base-layer chunk in a stream whose header declares none",
                              ck.offset, self.name)
        frame, pos = _varint_at(ck, 0)
        if pos >= len(ck.payload) or len(ck.payload) - pos > MAX_BASE_DATA:
            raise FormatError(f"base-layer chunk holds 0 or more than {MAX_BASE_DATA} bytes",
                              ck.offset, self.name)
        if frame <= self._base_frame or frame > self.frames + self.max_gap:
            if self.tolerant:
                return None
            raise FormatError(f"base-layer frame {frame} out of order (after "
                              f"{self._base_frame}, frames at {self.frames})", ck.offset,
                              self.name)
        self._base_frame = frame
        return BasePacket(frame, bytes(ck.payload[pos:]))

    def _head(self, ck: Chunk) -> _Head:
        """A frame packet's header fields, range-checked."""
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
        return _Head(first, n, ref, check, pos)

    # -- frame packets, held back and repaired (format 2.1) -------------------------------
    def _packet(self, ck: Chunk):
        """A frame packet as it arrives: decoded now, or, after a gap that a parity may
        still fill, held back (at most ``delay`` frames, ``MAX_WAIT_*``)."""
        head = self._head(ck)
        if self.delay and head.first > self.frames:
            held = self._waiting.get(head.first)
            if held is not None:  # a copy, or another packet for the same frame
                self.chunk_bytes["redundant"] += ck.nbytes
                if held[0].payload != ck.payload or held[0].kind != ck.kind:
                    self._problem(ck.offset, f"a second, different packet for frame "
                                             f"{head.first} while waiting: dropped")
                return
            self._waiting[head.first] = (ck, head)
            self._keep(ck, head.first)
            yield from self._retry_parities()
            yield from self._release()
            return
        yield from self._take(ck, head)
        yield from self._drain()
        yield from self._retry_parities()

    def _take(self, ck: Chunk, head: _Head):
        """Decode a packet; when it only restored the state of frames already concealed
        (a late repair or copy), decode the kept packets that follow it too, so the next
        packet decodes instead of waiting for a recovery point."""
        ok = yield from self._frames(ck, head)
        end = head.end
        while ok and end < self.frames and end not in self._states and end in self._kept:
            nxt = self._kept[end]
            h = self._head(nxt)
            ok = yield from self._frames(nxt, h)
            end = h.end

    def _drain(self):
        """Decode the held packets that are next in order."""
        while self._waiting and min(self._waiting) <= self.frames:
            ck, head = self._waiting.pop(min(self._waiting))
            yield from self._take(ck, head)

    def _release(self, force: bool = False, upto: int = 0):
        """Stop waiting for the oldest gap when the newest packet is more than ``delay``
        frames past it, the buffer is full, the gap is before ``upto`` (a parity of the
        group came: nothing else will fill it), or ``force`` (the end): conceal it and go
        on. Time is counted in frames of the packets that arrive: a receiver that gets no
        packet has nothing newer to show either."""
        while self._waiting:
            if not force and self.frames >= upto and \
                    max(self._waiting) - self.frames <= self.delay and \
                    len(self._waiting) <= MAX_WAIT_PACKETS and \
                    sum(c.nbytes for c, _ in self._waiting.values()) <= MAX_WAIT_BYTES:
                return
            ck, head = self._waiting.pop(min(self._waiting))
            yield from self._take(ck, head)
            yield from self._drain()

    def _keep(self, ck: Chunk, first: int, replace: bool = False) -> None:
        """Remember a frame packet as a possible parity member (the last KEEP_PACKETS)."""
        if ck.nbytes > MAX_PARITY_BODY + MAX_VARINT_BYTES or (first in self._kept
                                                             and not replace):
            return
        self._kept[first] = ck
        while len(self._kept) > KEEP_PACKETS:
            del self._kept[min(self._kept)]

    def _parity(self, ck: Chunk):
        par = parse_parity(ck.payload, self.header.packet_frames)
        if isinstance(par, str):
            raise FormatError(par, ck.offset, self.name)
        yield from self._repair(par, ck)
        # a gap up to the group's end is repaired now or will not be (an earlier group's
        # parity came before this one): stop waiting for it
        yield from self._release(upto=min(par.first + par.frames, self.frames + self.max_gap))

    def _repair(self, par: Parity, ck: Chunk):
        """Rebuild the one packet of the parity's group that is missing, and take it like
        a received one (every check a received packet passes). With two or more
        missing, the parity waits (a member may come late) among a few."""
        members = [c for f, c in self._kept.items() if par.covers(f)]
        if len(members) >= par.count:
            if len(members) == par.count and not verify(par, [_canonical(c) for c in members]):
                self._report(ck.offset, "parity chunk does not match its packets")
            return
        if len(members) < par.count - 1:
            if self.tolerant and (par, ck) not in self._parities:
                self._parities.append((par, ck))
                del self._parities[:-MAX_PENDING_PARITIES]
            return
        data = rebuild(par, [_canonical(c) for c in members])
        if isinstance(data, str):
            self._report(ck.offset, data)
            return
        length, pos = read_varint(data, 1)
        got = Chunk(data[0], data[pos : pos + length], ck.offset, len(data))
        head = self._head(got)
        if not (par.covers(head.first) and head.end <= par.first + par.frames) or \
                head.first in self._kept:
            self._report(ck.offset, f"the packet rebuilt from the parity (frame {head.first})"
                                    f" is not the one its group misses")
            return
        if not self.tolerant:  # strict reading stopped at the gap: nothing to repair
            return
        self.repaired += 1
        yield from self._packet(got)

    def _retry_parities(self):
        """Parities that came before enough of their group: a member may have arrived."""
        oldest = self.frames - KEEP_PACKETS * self.header.packet_frames
        self._parities = [(p, c) for p, c in self._parities if p.first + p.frames > oldest]
        while True:  # (a repair takes a packet, which may retry parities itself)
            ready = next((pc for pc in self._parities
                          if sum(pc[0].covers(f) for f in self._kept) >= pc[0].count - 1),
                         None)
            if ready is None:
                return
            self._parities.remove(ready)
            yield from self._repair(*ready)

    def _report(self, offset: int, reason: str) -> None:
        """A problem that conceals nothing by itself (strict: an error)."""
        if not self.tolerant:
            raise FormatError(reason, offset, self.name)
        self.skipped.append(Skipped(offset, reason, 0))

    def _frames(self, ck: Chunk, head: _Head):
        """Decode (or conceal) a packet's frames; returns whether it decoded."""
        p = ck.payload
        first, n, ref, check, pos = head.first, head.n, head.ref, head.check, head.pos
        self._keep(ck, first)
        end = first + n
        if end <= self.frames and all(f in self._states or f < self.frames - MAX_REF
                                      for f in range(first, end)):
            self.chunk_bytes["redundant"] += ck.nbytes  # a copy of frames already there
            return False
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
            if not (ref and state is None) and self._kept.get(first) is ck:
                del self._kept[first]  # refused (not only undecodable yet): no member
            if gap > self.max_gap:
                # far ahead and not decodable: not credible, and concealing up to it
                # would emit frames for nothing
                self._problem(ck.offset, f"{problem}; frame number {first} is {gap} frames "
                                         f"ahead: packet dropped")
                return False
            if self._open_skip is None or "reference check" in problem:
                self._problem(ck.offset, problem)
            yield from self._conceal(end)
            return False
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
        self._keep(ck, first, replace=True)  # the packet that decoded is the member
        return True

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

    def _source_part(self, ck: Chunk) -> SourceFrame | None:
        """A part of a paced source (format 2.3): the source once its last part is in.
        Parts come in order; a part that does not follow the ones held (one was lost)
        drops them: that source is lost, the slot keeps what it had."""
        p = ck.payload
        if len(p) < 4:
            raise FormatError("source part too short", ck.offset, self.name)
        slot = p[0]
        if slot >= max(self.header.n_sources, 1):
            raise FormatError(f"source slot {slot} beyond the header's "
                              f"{self.header.n_sources}", ck.offset, self.name)
        k, pos = _varint_at(ck, 1)
        parts, pos = _varint_at(ck, pos)
        if not (2 <= parts <= MAX_PARTS and k < parts and pos < len(p)):
            raise FormatError(f"source part {k} of {parts} (2..{MAX_PARTS} parts, not empty)",
                              ck.offset, self.name)
        a = self._assembly.get(slot)
        if k == 0:  # a new source for the slot: whatever was held for it is dropped
            a = self._assembly[slot] = _Assembly(parts, ck.offset)
        elif a is not None and a.parts == parts and k < a.next and self.tolerant:
            return None  # a duplicate of a part held
        elif a is None or a.parts != parts or k != a.next:
            self._assembly.pop(slot, None)
            want = f"part {a.next} of {a.parts}" if a is not None else "its part 0"
            raise FormatError(f"source slot {slot}: part {k} of {parts} where {want} was due "
                              "(a part lost?): the source is dropped", ck.offset, self.name)
        a.data += p[pos:]
        a.next += 1
        a.nbytes += ck.nbytes
        if len(a.data) > MAX_PAYLOAD[SOURCE]:
            del self._assembly[slot]
            raise FormatError(f"source slot {slot}: parts beyond {MAX_PAYLOAD[SOURCE]} bytes",
                              ck.offset, self.name)
        if a.next < parts:
            return None
        del self._assembly[slot]
        return self._source(Chunk(SOURCE, bytes(a.data), a.offset, a.nbytes))

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


@dataclass
class _Assembly:
    """The parts of one paced source received so far."""

    parts: int
    offset: int  # where its first part starts
    next: int = 0
    data: bytearray = dataclasses.field(default_factory=bytearray)
    nbytes: int = 0


@dataclass
class _Head:
    """A frame packet's header: first frame, frame count, reference distance (0: intra),
    reference check, and where its range-coded frames start in the payload."""

    first: int
    n: int
    ref: int
    check: int | None
    pos: int

    @property
    def end(self) -> int:
        return self.first + self.n


def _canonical(ck: Chunk) -> bytes:
    """A received frame packet's bytes as the writer made them (a minimal length field):
    what its group's parity was computed over."""
    return chunk(ck.kind, ck.payload)


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

