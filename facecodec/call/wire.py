"""What a call puts on its data channels, and how the stream's bytes are split among them.

Three data channels, negotiated (both peers create them with fixed ids, no in-band
announcement):

- ``fcs`` (id 1), unordered, ``maxRetransmits=0``: the stream's time-critical chunks --
  frame packets, parities, sound, crop boxes -- one message per ``Encoder.push`` /
  ``push_audio`` result. Never retransmitted: a lost message is concealed by the tolerant
  decoder, as the stream's own loss handling expects (docs/format.md, section 6).
- ``setup`` (id 2), ordered and reliable: the stream header, the source frames (whole or
  in parts) and the end chunk. Without them nothing can be drawn; they are not
  time-critical, so SCTP's retransmission is the right tool.
- ``control`` (id 3), ordered and reliable, JSON text: ``end`` (sender -> receiver: the
  number of stream frames, and between two machines the sender's log), ``bye`` (receiver
  -> sender: done), ``ping`` / ``pong`` (the receiver's clock offset to the sender's).
- ``feedback`` (id 4), unordered, ``maxRetransmits=0``, receiver -> sender, binary:
  ``b"I"`` (code the next frame intra: nothing decoded yet) or ``b"R" + u32 frame``
  (code the next frame against ``frame``, the receiver's ``Decoder.last_good``). The
  receiver sends a new request on two held frames in a row and repeats it every 0.2 s
  while it stays held; the sender codes two frames against it and ignores the copy
  (facecodec/call/peer.py).
  ``b"P" + u8 k``: pack ``k`` frames per ``fcs`` message from now on (1..``MAX_PACKING``;
  the receiver's congestion verdict, facecodec/call/congestion.py).
"""

from __future__ import annotations

import struct

from facecodec.bitstream.chunks import (
    AUDIO,
    AUDIO_ORIGIN,
    AUDIO_SHORT,
    END,
    FRAME_KINDS,
    SOURCE,
    SOURCE_PART,
    read_varint,
    short_audio_start,
)
from facecodec.bitstream.container import AudioPacket
from facecodec.bitstream.header import header_length

FCS, SETUP, CONTROL, FEEDBACK = 1, 2, 3, 4
CHANNELS = {  # id: (label, ordered, maxRetransmits)
    FCS: ("fcs", False, 0),
    SETUP: ("setup", True, None),
    CONTROL: ("control", True, None),
    FEEDBACK: ("feedback", False, 0),
}
SETUP_KINDS = (SOURCE, SOURCE_PART, END)
INTRA_REQUEST = b"I"
RECOVER = b"R"
PACK = b"P"
MAX_PACKING = 8  # frames per message a sender accepts to pack (1.1 s at 7.5 fps)


def intra_request() -> bytes:
    return INTRA_REQUEST


def recover_request(frame: int) -> bytes:
    return RECOVER + struct.pack("<I", frame)


def pack_request(frames: int) -> bytes:
    if not 1 <= frames <= MAX_PACKING:
        raise ValueError(f"frames per message must be in 1..{MAX_PACKING}, got {frames}")
    return PACK + bytes([frames])


def parse_feedback(msg: bytes) -> tuple[str, int | None] | None:
    """``("intra", None)``, ``("recover", frame)``, ``("pack", frames)``, or None for
    anything else (a peer's bytes: anything out of range is ignored)."""
    if msg == INTRA_REQUEST:
        return "intra", None
    if len(msg) == 5 and msg[:1] == RECOVER:
        return "recover", struct.unpack("<I", msg[1:])[0]
    if len(msg) == 2 and msg[:1] == PACK and 1 <= msg[1] <= MAX_PACKING:
        return "pack", msg[1]
    return None


class Splitter:
    """Cuts the sender's stream bytes into chunks and routes them: returns, for each
    call, ``(setup_bytes, fcs_bytes)`` (either may be empty). The first bytes are the
    header (to ``setup``). Chunks are whole in every call's output (the encoder emits
    whole chunks), which this checks."""

    def __init__(self) -> None:
        self._header_done = False

    def split(self, data: bytes) -> tuple[bytes, bytes]:
        setup, fcs = bytearray(), bytearray()
        pos = 0
        if not self._header_done and data:
            n = header_length(data[:8], "stream")
            setup += data[:n]
            pos = n
            self._header_done = True
        for kind, start, end in chunk_spans(data, pos):
            (setup if kind in SETUP_KINDS else fcs).extend(data[start:end])
        return bytes(setup), bytes(fcs)


def chunk_spans(data: bytes, pos: int = 0):
    """(kind, start, end) of each whole chunk in ``data`` from ``pos`` (kind | LEB128
    length | payload | CRC-16)."""
    while pos < len(data):
        got = read_varint(data, pos + 1)
        if got is None:
            raise ValueError("a chunk cut in two in the encoder's output")
        length, body = got
        end = body + length + 2
        if end > len(data):
            raise ValueError("a chunk cut in two in the encoder's output")
        yield data[pos], pos, end
        pos = end


def source_completed(data: bytes) -> list[int]:
    """The source slots whose last byte is in ``data`` (whole SOURCE chunks, or the last
    part of a paced one): when the receiver holds each source."""
    slots = []
    for kind, start, _ in chunk_spans(data):
        body = read_varint(data, start + 1)[1]
        if kind == SOURCE:
            slots.append(data[body])  # the slot is the payload's first byte
        elif kind == SOURCE_PART:
            part, p = read_varint(data, body + 1)
            count, _ = read_varint(data, p)
            if part == count - 1:
                slots.append(data[body])
    return slots


def has_end(data: bytes) -> bool:
    return any(kind == END for kind, _, _ in chunk_spans(data))


def has_frame(data: bytes) -> bool:
    """Whether ``data`` (whole chunks) holds a frame packet."""
    return bool(packet_frames(data))


def packet_frames(data: bytes) -> list[int]:
    """The first frame number of each frame packet in ``data`` (whole chunks), in order."""
    out = []
    for kind, start, _ in chunk_spans(data):
        if kind in FRAME_KINDS:
            got = read_varint(data, read_varint(data, start + 1)[1])
            if got is None:
                raise ValueError("a frame packet without its frame number")
            out.append(got[0])
    return out


def audio_packets(data: bytes, previous: int = -AUDIO_ORIGIN - 1) -> list[AudioPacket]:
    """The sound's packets among ``data``'s chunks (a receiver plays them as they arrive,
    beside the video decoder). ``previous``: the latest start heard before, which a short
    audio chunk's start is unwrapped against (format 2.6)."""
    out = []
    for kind, start, end in chunk_spans(data):
        if kind in (AUDIO, AUDIO_SHORT):
            body = read_varint(data, start + 1)[1]
            if kind == AUDIO:
                stored, pos = read_varint(data, body)
                at = stored - AUDIO_ORIGIN
            else:
                if end - 2 < body + 2:
                    raise ValueError("a short audio chunk without its start")
                pos = body + 2
                at = short_audio_start(struct.unpack_from("<H", data, body)[0], previous)
            previous = max(previous, at)
            out.append(AudioPacket(at, bytes(data[pos:end - 2])))
    return out


def end_frames(data: bytes) -> int | None:
    """The frame count of the end chunk in ``data``, if there is one."""
    for kind, start, _ in chunk_spans(data):
        if kind == END:
            body = read_varint(data, start + 1)[1]
            return struct.unpack("<I", data[body:body + 4])[0]
    return None
