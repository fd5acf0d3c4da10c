"""Packet-level forward error correction (format 2.1): a parity chunk after every group of
``G`` frame packets holds the XOR of their complete chunk bytes, so a receiver rebuilds any
one packet of the group that was lost (docs/format.md, section 2.1).

The parity is an ancillary chunk (kind 0x40): a 2.0 reader skips it and decodes the
stream as if it had none. Nothing in a parity is trusted: its sizes are bounded before
anything is allocated, and a rebuilt packet is only a candidate: it must parse as one
frame chunk with a valid CRC, name a frame of the group that did not arrive, and then
pass every check a received packet passes (reference check, canonical payload).
"""

from __future__ import annotations

from dataclasses import dataclass

from facecodec.bitstream.chunks import (
    FRAME_KINDS,
    MAX_FEC,
    MAX_PARITY_BODY,
    MAX_PARITY_PAYLOAD,
    PARITY,
    chunk,
    crc16,
    read_varint,
    varint,
)


@dataclass(frozen=True)
class Parity:
    first: int  # the group's first frame
    frames: int  # frames the group covers: first .. first + frames - 1
    count: int  # packets in the group
    length_xor: int  # XOR of the packets' lengths (complete chunk bytes)
    body: bytes  # XOR of the packets' bytes, each zero-padded to the longest

    def covers(self, frame: int) -> bool:
        return self.first <= frame < self.first + self.frames


def _xor(parts: list[bytes], size: int) -> bytearray:
    acc = 0
    for p in parts:
        acc ^= int.from_bytes(p, "little")  # zero-padding at the end is free in little-endian
    return bytearray(acc.to_bytes(size, "little"))


def parity_payload(members: list[tuple[int, int, bytes]], packet_frames: int) -> bytes:
    """The payload of the parity of ``members``: (first frame, frame count, chunk bytes) of
    consecutive frame packets, in order. ``packet_frames`` is the header's: the group's
    frame count is written only when a packet may hold several frames."""
    if not 1 <= len(members) <= MAX_FEC:
        raise ValueError(f"a parity covers 1..{MAX_FEC} packets, got {len(members)}")
    longest = max(len(b) for _, _, b in members)
    if longest > MAX_PARITY_BODY:
        raise ValueError(f"packet of {longest} bytes above the parity limit {MAX_PARITY_BODY}")
    first = members[0][0]
    frames = members[-1][0] + members[-1][1] - first
    length_xor = 0
    for _, _, b in members:
        length_xor ^= len(b)
    head = varint(first)
    if packet_frames > 1:
        head += varint(frames)
    head += bytes([len(members)]) + varint(length_xor)
    return head + bytes(_xor([b for _, _, b in members], longest))


def parse_parity(payload: bytes, packet_frames: int) -> Parity | str:
    """A parity chunk's payload, or why it is malformed (every field bounded)."""
    try:
        got = read_varint(payload, 0)
        if got is None:
            return "parity chunk ends inside its frame number"
        first, pos = got
        frames = None
        if packet_frames > 1:
            got = read_varint(payload, pos)
            if got is None:
                return "parity chunk ends inside its frame count"
            frames, pos = got
        if pos >= len(payload):
            return "parity chunk lacks its packet count"
        count, pos = payload[pos], pos + 1
        got = read_varint(payload, pos)
        if got is None:
            return "parity chunk ends inside its length field"
        length_xor, pos = got
    except ValueError as e:
        return f"parity chunk: {e}"
    frames = count if frames is None else frames
    body = payload[pos:]
    if not 1 <= count <= MAX_FEC:
        return f"parity covers {count} packets, not 1..{MAX_FEC}"
    if not count <= frames <= count * packet_frames:
        return f"parity covers {frames} frames in {count} packets of at most {packet_frames}"
    if first + frames - 1 >= 1 << 32:
        return f"parity frame number {first} out of range"
    if not 4 <= len(body) <= MAX_PARITY_BODY or length_xor >> MAX_PARITY_BODY.bit_length():
        return f"parity of {len(body)} bytes (limit {MAX_PARITY_BODY}) or bad length field"
    return Parity(first, frames, count, length_xor, body)


def rebuild(parity: Parity, present: list[bytes]) -> bytes | str:
    """The one packet of the group missing from ``present`` (the other ``count - 1``
    members' chunk bytes), or why it cannot be rebuilt. The result is a frame chunk with a
    valid CRC whose length is the parity's; the caller checks its frame number and decodes
    it like any received packet."""
    if len(present) != parity.count - 1:
        return f"parity needs {parity.count - 1} packets of its group, has {len(present)}"
    size = len(parity.body)
    length = parity.length_xor
    for b in present:
        if len(b) > size:
            return "a packet of the group is longer than its parity"
        length ^= len(b)
    if not 4 <= length <= size:
        return f"the rebuilt packet would be {length} bytes (parity {size})"
    data = _xor([parity.body, *present], size)
    if any(data[length:]):  # the missing packet was zero-padded like the others
        return "the parity does not match its group (padding)"
    data = bytes(data[:length])
    if data[0] not in FRAME_KINDS:
        return f"the rebuilt chunk is of kind 0x{data[0]:02x}, not a frame packet"
    try:
        got = read_varint(data, 1)
    except ValueError:
        got = None
    if got is None or got[1] + got[0] + 2 != length:
        return "the rebuilt chunk's length field disagrees with the parity"
    if crc16(data[:-2]) != int.from_bytes(data[-2:], "little"):
        return "the rebuilt packet's CRC does not match (damaged or forged parity)"
    return data


def verify(parity: Parity, members: list[bytes]) -> bool:
    """Does a parity match its complete group (all ``count`` members present)?"""
    if len(members) != parity.count or max(len(b) for b in members) != len(parity.body):
        return False
    length = 0
    for b in members:
        length ^= len(b)
    return length == parity.length_xor and not any(_xor([parity.body, *members],
                                                         len(parity.body)))


def canonical(kind: int, payload: bytes) -> bytes:
    """A received chunk's bytes as a writer makes them (minimal length field): what its
    group's parity was computed over."""
    return chunk(kind, payload)


__all__ = ["MAX_FEC", "MAX_PARITY_BODY", "MAX_PARITY_PAYLOAD", "PARITY", "Parity",
           "parity_payload", "parse_parity", "rebuild", "verify", "canonical"]
