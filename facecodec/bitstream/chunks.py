"""Chunk framing of the ``.fcs`` stream: writing chunks, and an incremental parser that
finds them again in damaged bytes.

A chunk is ``kind (1 byte) | payload length (LEB128) | payload | CRC-16`` (docs/format.md,
section 2). The parser is push-based: bytes go in as they arrive (a file block, a network
packet), complete chunks come out. It never asks for more bytes than the chunk it is
reading needs, and after damage it resynchronises on what has already arrived: a candidate
chunk that claims a long payload does not stop the scan from accepting a complete valid
chunk further on (a live decoder must not wait ~100 s of a 5 kbps stream for 64 KiB).

Every byte is looked at as a candidate start at most once and every candidate's CRC is
computed at most once, over at most its kind's length limit, so parsing any input takes
time linear in its size (times that limit for pathological garbage) and memory bounded by
the buffer of one chunk plus undecided candidates.
"""

from __future__ import annotations

import binascii
import heapq
import re
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

# chunk kinds
INTER = 0x01  # frames coded against the previous frame
INTRA = 0x02  # frames whose first is coded without reference
INTER_REF = 0x03  # frames whose first is coded against an older frame (a reference distance)
SOURCE = 0x10
CROP = 0x11
END = 0x7F
# format 2.1: the XOR of a group of frame packets (facecodec/bitstream/fec.py); an
# ancillary kind, so a 2.0 reader skips it
PARITY = 0x40
# format 2.2: an Opus packet of the call's sound (facecodec/audio.py); ancillary too
AUDIO = 0x41
# format 2.3: a piece of a source chunk's payload, sent paced between frame packets; an
# ancillary kind, so a 2.2 reader skips it and draws with the sources it has
SOURCE_PART = 0x42
# format 2.5: an AV1 temporal unit of the base layer, a low-quality picture of the face
# tube that the receiver fuses with its animation (issue 20); ancillary, so a 2.4 reader
# draws the animation alone
BASE = 0x43
# format 2.6: an audio chunk whose start is a 16-bit count of 20-ms steps, unwrapped
# against the previous audio packet: 2 bytes where the varint start takes 4 after 43 s, so
# the 40-ms packets that lip sync wants cost 2.6 kbps of Codec 2 1300 instead of 3.0
# (docs/format.md, section 2.3); ancillary, so a 2.5 reader skips it (no sound)
AUDIO_SHORT = 0x44
ANCILLARY = range(0x40, 0x7F)  # unknown kinds in this range are skipped, others refused
FRAME_KINDS = (INTER, INTRA, INTER_REF)

MAX_VARINT_BYTES = 5  # 35 bits: frame numbers and lengths up to 2^32 - 1
MAX_FEC = 16  # the most packets one parity covers
MAX_PARITY_BODY = 2048  # the longest packet a parity covers (bytes, framing included)
# first frame, frame count, length XOR (varints), packet count (u8), then the XOR
MAX_PARITY_PAYLOAD = 3 * MAX_VARINT_BYTES + 1 + MAX_PARITY_BODY
MAX_PAYLOAD = {INTER: 1 << 16, INTRA: 1 << 16, INTER_REF: 1 << 16, SOURCE: 4 << 20,
               CROP: 64, END: 64, PARITY: MAX_PARITY_PAYLOAD}
MAX_ANCILLARY = 1 << 16
AUDIO_ORIGIN = 48000  # an audio chunk's start is stored + this (Opus starts before 0)
MAX_AUDIO_DATA = 4000  # bytes of one Opus packet (RFC 6716: 1275 per 20 ms frame)
MAX_PAYLOAD[AUDIO] = MAX_VARINT_BYTES + MAX_AUDIO_DATA
AUDIO_STEP = 960  # samples at 48 kHz in one step of a short audio chunk's start (20 ms)
SHORT_WRAP = 1 << 16  # a short start is its step count modulo this (21.8 min)
# a writer uses the short form only within this many steps (5.5 min) of its previous
# packet, half the reach of the unwrapping, so a reader that lost the packets in between
# (up to 5.5 min of them) still places it
SHORT_REACH = SHORT_WRAP // 4
MAX_PAYLOAD[AUDIO_SHORT] = 2 + MAX_AUDIO_DATA
MAX_PART_DATA = 4096  # bytes of a source chunk's payload one part carries
MAX_PARTS = (MAX_PAYLOAD[SOURCE] + MAX_PART_DATA - 1) // MAX_PART_DATA  # a whole source
# slot (u8), part number, part count (varints), then the data
MAX_PAYLOAD[SOURCE_PART] = 1 + 2 * MAX_VARINT_BYTES + MAX_PART_DATA
MAX_BASE_DATA = 32768  # bytes of one base-layer frame (a 256-px AV1 key frame at CRF 20)
MAX_PAYLOAD[BASE] = MAX_VARINT_BYTES + MAX_BASE_DATA  # frame number, then the OBUs


_RESUME_KINDS = re.compile(b"[" + re.escape(bytes([*FRAME_KINDS, SOURCE, END, PARITY, AUDIO,
                                                   SOURCE_PART, BASE, AUDIO_SHORT])) + b"]")


def _steps(start: int) -> int:
    """A start sample on the grid of :data:`AUDIO_STEP`, counted from -1 s (the stored
    origin of every audio start); a start before -1 s counts as -1 s."""
    return max(start + AUDIO_ORIGIN, 0) // AUDIO_STEP


def short_audio_stored(start: int, previous: int) -> int | None:
    """What a short audio chunk (format 2.6) stores for a packet at ``start`` (samples at
    48 kHz) written after one at ``previous`` (``-AUDIO_ORIGIN - 1`` before the first):
    its step count modulo :data:`SHORT_WRAP`; None when the short form cannot carry it (a
    start off the 20-ms grid, as Opus's are, or more than :data:`SHORT_REACH` steps from
    ``previous``)."""
    if start < -AUDIO_ORIGIN or (start + AUDIO_ORIGIN) % AUDIO_STEP:
        return None
    steps = (start + AUDIO_ORIGIN) // AUDIO_STEP
    if abs(steps - _steps(previous)) >= SHORT_REACH:
        return None
    return steps % SHORT_WRAP


def short_audio_start(stored: int, previous: int) -> int:
    """The start (samples at 48 kHz) of a short audio chunk that stores ``stored``, read
    after a packet at ``previous``: of the starts on the 20-ms grid whose step count is
    ``stored`` modulo :data:`SHORT_WRAP`, the nearest to ``previous``. May come out before
    -1 s (a stored value no writer makes there): the caller refuses it."""
    ref = _steps(previous)
    steps = ref + (stored - ref + SHORT_WRAP // 2) % SHORT_WRAP - SHORT_WRAP // 2
    return steps * AUDIO_STEP - AUDIO_ORIGIN


def varint(n: int) -> bytes:
    """Unsigned LEB128."""
    if n < 0:
        raise ValueError("varint of a negative number")
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def read_varint(b: bytes | memoryview, pos: int, end: int | None = None
                ) -> tuple[int, int] | None:
    """(value, next position) of the varint at ``b[pos]``; None if it runs past ``end``.
    Raises ValueError when it is longer than 5 bytes."""
    end = len(b) if end is None else end
    value = 0
    for i in range(MAX_VARINT_BYTES):
        if pos + i >= end:
            return None
        byte = b[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, pos + i + 1
    raise ValueError("varint longer than 5 bytes")


def crc16(data: bytes | memoryview) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF)."""
    return binascii.crc_hqx(data, 0xFFFF)


def chunk(kind: int, payload: bytes) -> bytes:
    """kind (1 byte) | payload length (LEB128) | payload | CRC-16 of all before it."""
    body = bytes([kind]) + varint(len(payload)) + payload
    return body + struct.pack("<H", crc16(body))


def limit(kind: int) -> int | None:
    """The largest payload of a chunk kind; None for a kind no stream may hold."""
    if kind in MAX_PAYLOAD:
        return MAX_PAYLOAD[kind]
    if kind in ANCILLARY:
        return MAX_ANCILLARY
    return None


@dataclass
class Chunk:
    kind: int
    payload: bytes
    offset: int  # stream offset of its kind byte
    nbytes: int  # all its bytes, framing included


@dataclass
class Damage:
    offset: int  # where the damaged bytes start
    reason: str
    resumed: int | None = None  # where parsing resumed (None: at the end of the input)


class ChunkParser:
    """Bytes in (``feed``), chunks out (``chunks``), with resynchronisation after damage.

    Args:
        start: stream offset of the first byte fed (the header's length).
        plausible: an optional structural check of a resync candidate, ``(kind, payload
            length, the first <= 16 payload bytes that have arrived) -> bool`` (e.g. a
            frame number the reader can use): False rejects it before its CRC is computed
            (garbage that happens to carry a valid CRC-16, and cost); True when the bytes
            there cannot tell yet.
    """

    def __init__(self, start: int = 0,
                 plausible: Callable[[int, int, bytes], bool] | None = None):
        self._buf = bytearray()
        self._base = start  # stream offset of _buf[0]
        self._pos = 0  # next candidate in _buf
        self._eof = False
        self._resync: Damage | None = None  # set while scanning for the next good chunk
        self._pending: list[tuple[int, int]] = []  # undecided candidates: (end, start)
        self._tentative: int | None = None  # an incomplete chunk scanned past, in _buf
        self._plausible = plausible

    @property
    def offset(self) -> int:
        """Stream offset of the next byte to parse."""
        return self._base + self._pos

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def wanted(self) -> int:
        """How many more bytes decide the next chunk (at least 1): what a reader of a
        source that blocks until it has all it asked for should ask for."""
        if self._resync is not None:
            return 1
        i = self._pos
        if i + 1 >= len(self._buf):
            return i + 2 - len(self._buf)
        try:
            got = read_varint(self._buf, i + 1)
        except ValueError:
            return 1
        if got is None:
            return 1
        return max(1, got[1] + got[0] + 2 - len(self._buf))

    def feed(self, data: bytes) -> None:
        self._buf += data

    def close(self) -> None:
        """No more bytes will come: undecided candidates become invalid."""
        self._eof = True

    def chunks(self) -> Iterator[Chunk | Damage]:
        """Every chunk (or damage report) that the bytes fed so far decide."""
        while True:
            if self._resync is not None:
                found = self._scan()
                if found is None:
                    if self._eof:
                        self._resync.resumed = None
                        dmg, self._resync = self._resync, None
                        if self._tentative is not None:  # it never completed: a cut
                            dmg.reason = (f"truncated chunk 0x{self._buf[self._tentative]:02x}"
                                          f" ({len(self._buf) - self._tentative} bytes left)")
                            self._tentative = None
                        self._drop(len(self._buf))
                        yield dmg
                    return
                completed = found == self._tentative  # the incomplete chunk came whole
                self._tentative = None
                self._drop(found)
                dmg, self._resync = self._resync, None
                if not completed:
                    dmg.resumed = self.offset
                    yield dmg
            if self._pos >= len(self._buf):
                self._compact()
                return
            got = self._parse_at(self._pos)
            if got is None:  # needs more bytes
                if self._eof:
                    self._damage(f"truncated chunk ({self.buffered} bytes left)")
                    continue
                # Do not wait on it alone: a damaged length field can claim 64 KiB, minutes
                # of a call. Scan what follows meanwhile; if a valid chunk turns up before
                # this one completes, this one was damage.
                self._tentative = self._pos
                end = self._chunk_end(self._pos)
                self._damage(f"chunk 0x{self._buf[self._pos]:02x} claims "
                                        f"{end - self._pos} bytes, and a valid chunk "
                                        f"follows before its end")
                heapq.heappush(self._pending, (end, self._tentative))
                continue
            if isinstance(got, str):
                self._damage(got)
                continue
            kind, payload, end = got
            ck = Chunk(kind, bytes(payload), self.offset, end - self._pos)
            self._pos = end
            yield ck

    # -- parsing --------------------------------------------------------------------------
    def _parse_at(self, i: int) -> tuple[int, memoryview, int] | str | None:
        """The chunk at ``_buf[i]``: (kind, payload, end), a reason it is invalid, or
        None if more bytes are needed to tell."""
        buf = self._buf
        kind = buf[i]
        lim = limit(kind)
        if lim is None:
            return f"unknown chunk kind 0x{kind:02x}"
        try:
            got = read_varint(buf, i + 1)
        except ValueError as e:
            return f"chunk 0x{kind:02x}: {e}"
        if got is None:
            return None
        length, p = got
        if length > lim:
            return f"chunk 0x{kind:02x} claims {length} bytes (limit {lim})"
        end = p + length + 2
        if end > len(buf):
            return None
        view = memoryview(buf)
        try:
            (crc,) = struct.unpack_from("<H", buf, p + length)
            if crc != crc16(view[i : p + length]):
                return f"CRC mismatch in chunk 0x{kind:02x}"
            return kind, view[p : p + length].tobytes(), end
        finally:
            view.release()

    def _damage(self, reason: str) -> None:
        """Start a resync one byte after the bad chunk's start."""
        self._resync = Damage(self.offset, reason)
        self._pos += 1
        self._pending = []

    def _scan(self) -> int | None:
        """Index in _buf of the first chunk that parses with a valid CRC (and passes the
        plausibility check), or None if none is decided yet. Candidates that need more
        bytes wait in a heap by the end they claim, each checked once."""
        buf = self._buf
        best = None
        while self._pending and (self._pending[0][0] <= len(buf) or self._eof):
            _, i = heapq.heappop(self._pending)
            v = self._valid(i)
            if v is None:  # its length is known now: wait for its end
                heapq.heappush(self._pending, (self._claimed_end(i), i))
                continue
            if v and (best is None or i < best):
                best = i
        while best is None and self._pos < len(buf):
            # resume only at frames, parities, sources or the end: jump to the next such byte
            m = _RESUME_KINDS.search(buf, self._pos)
            if m is None:
                self._pos = len(buf)
                break
            i = m.start()
            self._pos = i + 1
            v = self._valid(i)
            if v is True:
                best = i
            elif v is None:
                heapq.heappush(self._pending, (self._claimed_end(i), i))
        if best is None:
            return None
        # undecided candidates before the one found are given up: the stream goes on
        self._pending = []
        return best

    def _valid(self, i: int) -> bool | None:
        """Is there a chunk at ``_buf[i]`` to resume at? None: more bytes will tell.

        A CRC-16 alone passes one garbage candidate in 65,536, which damage of a few
        hundred kilobytes offers; so a resync candidate must also pass the reader's
        plausibility check and be followed by another valid chunk (or the end of the
        input): one packet of latency after damage, for a false resync of ~2^-32.
        """
        if i != self._tentative and self._plausible is not None:
            # the cheap structural check first, on what has arrived: most garbage
            # candidates fail it, before their CRC over up to a kind's limit of bytes
            try:
                head = read_varint(self._buf, i + 1)
            except ValueError:
                return False
            if head is not None:
                length, p = head
                if not self._plausible(self._buf[i], length,
                                       bytes(self._buf[p : p + min(length, 16)])):
                    return False
        got = self._parse_at(i)
        if got is None:
            return None if not self._eof else False
        if isinstance(got, str):
            return False
        kind, payload, end = got
        if i == self._tentative:  # a chunk in the normal course: its CRC is enough
            return True
        if kind == END or end == len(self._buf) and self._eof:
            return True
        nxt = self._parse_at(end) if end < len(self._buf) else None
        if nxt is None:
            return None if not self._eof else True
        return not isinstance(nxt, str)

    def _claimed_end(self, i: int) -> int:
        """How far the buffer must reach to decide the candidate at ``i``: its end, or
        once that is there, the end of the chunk that follows it."""
        end = self._chunk_end(i)
        if i == self._tentative or end > len(self._buf):
            return end
        return max(end + 1, self._chunk_end(end))

    def _chunk_end(self, i: int) -> int:
        try:
            got = read_varint(self._buf, i + 1)
        except ValueError:
            return i + 1
        if got is None:
            return i + 1 + MAX_VARINT_BYTES
        return got[1] + got[0] + 2

    def _drop(self, i: int) -> None:
        """Forget _buf before index ``i``; parsing continues there."""
        self._pos = i
        self._compact(force=True)

    def _compact(self, force: bool = False) -> None:
        keep = self._pos
        if self._pending:
            keep = min(keep, min(s for _, s in self._pending))
        if keep and (force or keep > len(self._buf) // 2):
            del self._buf[:keep]
            self._base += keep
            self._pos -= keep
            self._pending = [(e - keep, s - keep) for e, s in self._pending]
            if self._tentative is not None:
                self._tentative -= keep
            heapq.heapify(self._pending)
