"""Format 2.1: parity chunks (packet-level forward error correction).

A writer with ``fec=G`` sends, after every G frame packets, the XOR of their bytes; a
tolerant reader keeps the packets that arrive after a loss until the parity comes, rebuilds
the lost one and decodes them all in order. Every lossy decode is compared with the
loss-free decode of the same stream (``check_against``): a frame output as decoded must
carry exactly the loss-free values, whatever the parity says.
"""

import io
import struct
import subprocess
import sys
import zlib

import pytest
from bitstream_helpers import as_clip, random_walk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_bitstream_loss import FRAMES, PRIOR, TABLE, check_against, header, kind, split

from facecodec.bitstream.chunks import (
    ANCILLARY,
    FRAME_KINDS,
    MAX_ANCILLARY,
    PARITY,
    SOURCE_PART,
    chunk,
    limit,
    read_varint,
    varint,
)
from facecodec.bitstream.container import DecodedFrame, FcsReader, FcsWriter
from facecodec.bitstream.fec import parity_payload, parse_parity
from facecodec.bitstream.values import save_values
from facecodec.errors import FormatError, InputError


def write(frames=FRAMES, **kw) -> list[bytes]:
    """The stream's parts in sending order: header, source, then each chunk."""
    hkw = {k: kw.pop(k) for k in ("intra_period", "packet_frames") if k in kw}
    if "header_info" in kw:
        hkw["info"] = kw.pop("header_info")
    out = io.BytesIO()
    w = FcsWriter(out, header(**hkw), PRIOR, **kw)
    w.add_source(0, "jpeg", 8, 8, b"\xff\xd8fake", frames[0])
    for f in frames:
        w.add_frame(f)
    w.close()
    data = out.getvalue()
    hlen = len(w.header.to_bytes())
    return [data[:hlen], *split(data[hlen:])]


def decode(parts, **kw) -> tuple[list[DecodedFrame], FcsReader]:
    r = FcsReader(iter(parts), prior=PRIOR, tolerant=True, **kw)
    return [e for e in r if isinstance(e, DecodedFrame)], r


def frame_parts(parts) -> list[int]:
    return [i for i, p in enumerate(parts) if i > 0 and kind(p) in FRAME_KINDS]


def parity_parts(parts) -> list[int]:
    return [i for i, p in enumerate(parts) if i > 0 and kind(p) == PARITY]


def groups(parts) -> list[tuple[list[int], int]]:
    """(indices of the frame packets, index of the parity) of each group (a recovery
    point's copy is no member)."""
    out, members, seen = [], [], set()
    for i, p in enumerate(parts):
        if i and kind(p) in FRAME_KINDS and frame_of(p) not in seen:
            seen.add(frame_of(p))
            members.append(i)
        elif i and kind(p) == PARITY:
            out.append((members, i))
            members = []
    return out


def copied(parts) -> set[int]:
    """Frames whose packet is sent twice (intra frames and recovery points)."""
    firsts = [frame_of(parts[i]) for i in frame_parts(parts)]
    return {f for f in firsts if firsts.count(f) > 1}


def frame_of(part: bytes) -> int:
    return read_varint(payload_of(part), 0)[0]


def forge(first: int, count: int, length_xor: int, body: bytes) -> bytes:
    return chunk(PARITY, varint(first) + bytes([count]) + varint(length_xor) + body)


def drop(parts, *idx) -> list[bytes]:
    return [p for i, p in enumerate(parts) if i not in idx]


def payload_of(part: bytes) -> bytes:
    n, pos = read_varint(part, 1)
    return part[pos : pos + n]


REF = decode(write())[0]  # the plain stream decodes to the same values


def test_the_writer_sends_a_parity_after_every_group_and_declares_it():
    parts = write(fec=4)
    gs = groups(parts)
    assert len(gs) == 15 and all(len(m) == 4 for m, _ in gs)  # 60 frames, one packet each
    r = FcsReader(iter(parts), prior=PRIOR)  # strict: parities are checked, not errors
    out = [e for e in r if isinstance(e, DecodedFrame)]
    assert r.header.info["fec"] == 4 and r.delay == 0  # strict reading never waits
    assert check_against(out, REF) == 0
    assert r.chunk_bytes["parity"] == sum(len(parts[i]) for i in parity_parts(parts))
    # the last group is parity-protected however short it is
    parts = write(frames=FRAMES[:10], fec=4)
    assert [len(m) for m, _ in groups(parts)] == [4, 4, 2]
    with pytest.raises(ValueError, match="fec"):
        FcsWriter(io.BytesIO(), header(), PRIOR, fec=1)
    with pytest.raises(ValueError, match="fec"):
        FcsWriter(io.BytesIO(), header(), PRIOR, fec=17)


@pytest.mark.parametrize("protection", [{"fec": 4}, {"fec": 3, "recovery_period": 4},
                                        {"fec": 2, "recovery_period": 3, "redundancy": 1}])
def test_one_loss_per_group_is_repaired_bit_exactly(protection):
    parts = write(**protection)
    ref, _ = decode(parts)
    assert check_against(ref, REF) == 0
    twice = copied(parts)
    for i in frame_parts(parts):  # every single packet
        out, r = decode(drop(parts, i))
        assert check_against(out, ref) == 0, i
        # (a packet sent twice is rebuilt, or decoded from its copy if that comes first)
        assert not r.skipped and r.repaired <= 1
        assert r.repaired or frame_of(parts[i]) in twice
    for k in range(protection["fec"]):  # the k-th packet of every group at once
        lost = [m[k] for m, _ in groups(parts) if k < len(m)]
        out, r = decode(drop(parts, *lost))
        assert check_against(out, ref) == 0
        assert sum(frame_of(parts[i]) not in twice for i in lost) <= r.repaired <= len(lost)


def test_two_losses_in_a_group_are_concealed_and_resume():
    parts = write(fec=4, recovery_period=4, redundancy=1)
    ref, _ = decode(parts)
    m, _ = groups(parts)[3]  # frames 12..15, 12 a recovery point
    out, r = decode(drop(parts, m[1], m[2]))
    held = [f.index for f in out if f.held]
    assert check_against(out, ref) == len(held)
    # held from the first lost frame up to the next recovery point (16)
    assert held == [13, 14, 15]
    assert r.repaired == 0 and any("lost" in s.reason for s in r.skipped)
    # without recovery points it resumes at the next intra frame
    plain = write(fec=4)
    (m, _) = groups(plain)[2]
    out, _ = decode(drop(plain, m[0], m[3]))
    held = [f.index for f in out if f.held]
    assert check_against(out, REF) == len(held) and held[-1] == 29


def test_a_lost_parity_costs_nothing_alone_and_the_group_otherwise():
    parts = write(fec=4, recovery_period=4)
    ref, _ = decode(parts)
    m, par = groups(parts)[5]
    out, r = decode(drop(parts, par))
    assert check_against(out, ref) == 0 and not r.skipped
    out, r = decode(drop(parts, par, m[1]))  # frames 20..23, 20 a recovery point
    held = [f.index for f in out if f.held]
    assert check_against(out, ref) == len(held) and held == [21, 22, 23]
    # the recovery point itself: the chain of recovery points breaks up to the intra frame
    out, r = decode(drop(parts, par, m[0]))
    held = [f.index for f in out if f.held]
    assert check_against(out, ref) == len(held) and held == list(range(20, 30))


def test_a_late_repair_restores_the_stream_even_without_waiting():
    """max_delay=0: no frame is held back; the lost frame and those after it in its group
    are concealed, and the parity's rebuilt packet restores their states, so the next
    group decodes at once instead of waiting for the next intra frame."""
    parts = write(fec=4)
    m, _ = groups(parts)[2]
    out, r = decode(drop(parts, m[0]), max_delay=0)
    held = [f.index for f in out if f.held]
    first = frame_of(parts[m[0]])
    assert held == list(range(first, first + 4)) and r.repaired == 1
    assert check_against(out, REF) == 4


def live(parts, fed: list[int]):
    """The parts one at a time, ``fed[0]`` the newest frame packet's frame number."""
    for p in parts:
        if kind(p) in FRAME_KINDS:
            fed[0] = max(fed[0], frame_of(p))
        yield p


def test_live_input_waits_at_most_the_group_for_a_repair():
    """Packets fed one at a time: a frame after a loss comes out at most G - 1 packets
    late (the parity follows the group's last packet), all decoded; the default wait is
    the header's group, and max_delay bounds it (then the frames of a group repaired too
    late are concealed, and the stream goes on decoded right after the parity)."""
    for fec, max_delay in ((4, None), (8, None), (8, 2), (2, None)):
        parts = write(fec=fec)
        bound = fec - 1 if max_delay is None else max_delay
        for g, (m, _) in enumerate(groups(parts)[:6]):
            lost = m[g % len(m)]
            fed, late = [0], []
            r = FcsReader(live(drop(parts, lost), fed), prior=PRIOR, tolerant=True,
                          max_delay=max_delay)
            out, late_held = [], [0]
            for e in r:
                if isinstance(e, DecodedFrame):
                    out.append(e)
                    (late_held if e.held else late).append(fed[0] - e.index)
            held = check_against(out, REF)
            # a decoded frame waits at most the bound; a lost one is given up (concealed)
            # when the packet after the bound arrives
            assert max(late) <= bound and max(late_held) <= bound + 1, (fec, max_delay, g)
            if max_delay is None:
                assert held == 0 and max(late) == min(bound, len(m) - 1 - g % len(m))
    with pytest.raises(ValueError, match="max_delay"):
        FcsReader(iter(write(fec=4)), prior=PRIOR, tolerant=True, max_delay=-1)


def test_the_wait_is_bounded_in_packets_and_bytes():
    """A header that declares a huge group cannot make the reader hold more than its
    buffer: a crafted 'fec' is ignored outside 2..16, and max_delay caps the wait."""
    parts = write(fec=4)
    _, r = decode(parts)
    assert r.fec == 4 and r.delay == 3
    for bogus in (99, 1, "4", 4.0, True, [4]):
        lying = write(header_info={"fec": bogus})
        out, r = decode(lying)
        assert r.fec == 0 and r.delay == 0 and check_against(out, REF) == 0
    _, r = decode(parts, max_delay=255)
    assert r.delay == 255
    m, _ = groups(parts)[0]
    out, r = decode(drop(parts, m[1], *parity_parts(parts)), max_delay=255)
    assert check_against(out, REF) > 0 and len(r._waiting) == 0


def test_a_forged_or_corrupt_parity_never_yields_a_wrong_frame():
    parts = write(fec=4)
    other = write(random_walk(TABLE, 60, seed=99, step=0.002), fec=4)
    m, par = groups(parts)[4]
    lost = m[2]
    base = drop(parts, lost)
    at = par - 1  # the parity's index once the lost packet is gone
    p = parse_parity(payload_of(parts[par]), 1)
    assert p.first == 16 and p.count == 4
    forgeries = {
        # another stream's parity for the same frames: the rebuilt packet is that
        # stream's, refused by its reference check
        "foreign": other[par],
        # a parity of the group's other packets with the wrong packet in the lost slot
        "spliced": chunk(PARITY, parity_payload(
            [(frame_of(parts[i]), 1, (other if i == lost else parts)[i]) for i in m], 1)),
        "flipped": chunk(PARITY, payload_of(parts[par])[:-3] + bytes(
            b ^ 0x5A for b in payload_of(parts[par])[-3:])),
        "zero": forge(p.first, 4, p.length_xor, bytes(len(p.body))),
        "other frames": forge(p.first + 1, 4, p.length_xor, p.body),
        "bigger group": forge(p.first, 5, p.length_xor, p.body),
        "smaller group": forge(p.first, 3, p.length_xor, p.body),
        "short": forge(p.first, 4, p.length_xor, p.body[:-5]),
        "long": forge(p.first, 4, p.length_xor, p.body + b"\x01" * 9),
        "length": forge(p.first, 4, p.length_xor ^ 3, p.body),
    }
    for name, forged in forgeries.items():
        out, r = decode(base[:at] + [forged] + base[at + 1 :])
        held = check_against(out, REF)  # nothing shown from wrong values
        assert held > 0 and r.repaired <= 1, name
        assert r.skipped, name
    # the spliced packet is rebuilt whole (its CRC is right): its reference check refuses
    # it, as it does a spliced packet that arrives
    assert any("reference check" in s.reason
               for s in decode(base[:at] + [forgeries["spliced"]] + base[at + 1 :])[1].skipped)
    # strict reading of a complete stream checks each parity against its group
    with pytest.raises(FormatError, match="parity"):
        list(FcsReader(iter(parts[:par] + [forgeries["flipped"]] + parts[par + 1 :]),
                       prior=PRIOR))
    with pytest.raises(FormatError, match="parity"):
        list(FcsReader(iter(parts[:par] + [chunk(PARITY, b"\x05\x00")] + parts[par + 1 :]),
                       prior=PRIOR))


@settings(max_examples=60, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(st.data())
def test_random_losses_and_damaged_parities_never_show_a_wrong_frame(data):
    protection = data.draw(st.sampled_from([{"fec": 2}, {"fec": 4, "recovery_period": 3},
                                            {"fec": 5, "recovery_period": 3,
                                             "redundancy": 1}]))
    parts = write(**protection)
    ref, _ = decode(parts)
    sent = []
    for i, p in enumerate(parts):
        if i > 1 and kind(p) in (*FRAME_KINDS, PARITY) and data.draw(
                st.integers(0, 9)) == 0:
            continue  # lost
        if i > 1 and kind(p) == PARITY and data.draw(st.integers(0, 3)) == 0:
            body = bytearray(payload_of(p))
            j = data.draw(st.integers(0, len(body) - 1))
            body[j] ^= data.draw(st.integers(1, 255))
            p = chunk(PARITY, bytes(body))  # damaged, CRC recomputed
        sent.append(p)
    if data.draw(st.booleans()):  # and a neighbour swap somewhere
        j = data.draw(st.integers(2, len(sent) - 3))
        sent[j], sent[j + 1] = sent[j + 1], sent[j]
    out, _ = decode(sent, max_delay=data.draw(st.sampled_from([None, 0, 1, 6])))
    check_against(out, ref)


def test_duplicates_and_reordering_around_a_repair():
    parts = write(fec=4)
    m, par = groups(parts)[3]
    lost = m[1]
    # the parity and a member twice, the lost packet's neighbours swapped
    sent = list(parts)
    sent.insert(par + 1, parts[par])
    sent.insert(m[3], parts[m[3]])
    sent[m[2]], sent[m[3]] = sent[m[3]], sent[m[2]]
    sent.remove(parts[lost])
    out, r = decode(sent)
    assert check_against(out, REF) == 0 and r.repaired == 1
    # the lost packet arrives late, after the parity rebuilt it: a copy
    sent = drop(parts, m[1])
    sent.insert(sent.index(parts[par]) + 1, parts[m[1]])
    out, r = decode(sent)
    assert check_against(out, REF) == 0 and r.repaired == 1
    # two missing when the parity comes: the group is given up at once (in order, nothing
    # else could fill it), the parity kept; when one turns up late, the parity rebuilds
    # the other, which restores the group's states: the next group decodes
    first = frame_of(parts[m[0]])
    for late in (m[1], m[3]):
        sent = drop(parts, m[1], late if late != m[1] else m[2])
        sent.insert(sent.index(parts[par]) + 1, parts[late])
        out, r = decode(sent)
        held = [f.index for f in out if f.held]
        assert check_against(out, REF) == len(held) and r.repaired == 1
        assert held and set(held) <= set(range(first + 1, first + 4))


def test_several_frames_per_packet():
    parts = write(fec=3, packet_frames=4, intra_period=20)
    ref, _ = decode(parts)
    assert check_against(ref, REF) == 0
    for i in frame_parts(parts):
        out, r = decode(drop(parts, i))
        assert check_against(out, ref) == 0 and r.repaired == 1, i


def test_format_2_0_streams_and_readers():
    """A 2.0 to 2.5 stream (minor version 0..5; 2.2 adds audio chunks, 2.3 source parts,
    2.4 Codec 2 sound, 2.5 base-layer chunks, 2.6 short audio chunks) decodes as before;
    for a 2.0 reader a parity is an ancillary chunk of an allowed size, skipped: the
    frames are the same without them."""
    parts = write(recovery_period=3, redundancy=1)
    assert parts[0][4:6] == b"\x02\x06"
    for minor in (0, 1, 2, 3, 4, 5):
        h = bytearray(parts[0])
        h[5] = minor
        h[-4:] = struct.pack("<I", zlib.crc32(bytes(h[:-4])))
        out = [e for e in FcsReader(iter([bytes(h), *parts[1:]]), prior=PRIOR)
               if isinstance(e, DecodedFrame)]
        assert check_against(out, REF) == 0
    assert PARITY in ANCILLARY and limit(PARITY) <= MAX_ANCILLARY
    assert SOURCE_PART in ANCILLARY and limit(SOURCE_PART) <= MAX_ANCILLARY
    parts = write(fec=4)
    bare = [p for p in parts if kind(p) != PARITY]
    out = [e for e in FcsReader(iter(bare), prior=PRIOR) if isinstance(e, DecodedFrame)]
    assert check_against(out, REF) == 0


def test_fec_through_the_api_and_the_cli(tmp_path):
    from facecodec.codec import Decoder, Encoder

    with pytest.raises(InputError, match="fec"):  # (more in test_api_errors.py)
        Encoder(fec=1)
    for bad in (-1, 256, 1.5):
        with pytest.raises(InputError, match="max_delay"):
            Decoder(max_delay=bad)
    save_values(tmp_path / "v.npz", 15, as_clip(TABLE, FRAMES))
    run = [sys.executable, "-m", "facecodec"]
    r = subprocess.run([*run, "encode", "v.npz", "v.fcs", "--table", "sup_unsup_expr",
                        "--prior", "untrained", "--fec", "1"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "2..16" in r.stderr
    r = subprocess.run([*run, "encode", "v.npz", "v.fcs", "--table", "sup_unsup_expr",
                        "--prior", "untrained", "--fec", "4"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    data = (tmp_path / "v.fcs").read_bytes()
    r = FcsReader(data, prior=PRIOR)
    assert r.header.info["fec"] == 4
    assert check_against([e for e in r if isinstance(e, DecodedFrame)], REF) == 0
    assert r.chunk_bytes["parity"] > 0
    # a preset, one field overridden: parities per 5 packets, intra frames sent twice
    r = subprocess.run([*run, "encode", "v.npz", "p.fcs", "--table", "sup_unsup_expr",
                        "--prior", "untrained", "--protect", "strong", "--fec", "5"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    r = FcsReader((tmp_path / "p.fcs").read_bytes(), prior=PRIOR)
    assert r.header.info["fec"] == 5
    assert check_against([e for e in r if isinstance(e, DecodedFrame)], REF) == 0
    assert r.chunk_bytes["redundant"] > 0 and r.chunk_bytes["parity"] > 0
    with pytest.raises(InputError, match="protection must be one of"):
        Encoder(protection="max")


def test_recovery_points_anchored_on_the_intra_frame_survive_a_lost_one():
    """recovery_anchor="intra": each recovery point is coded against the last intra frame,
    so losing one costs only its own period, where the chain costs up to the intra."""
    parts = write(recovery_period=4, recovery_anchor="intra")
    ref, _ = decode(parts)
    lost = next(i for i, p in enumerate(parts) if kind(p) in FRAME_KINDS and frame_of(p) == 20)
    out, r = decode(drop(parts, lost))
    held = [f.index for f in out if f.held]
    assert check_against(out, ref) == len(held) and held == [20, 21, 22, 23]
    with pytest.raises(ValueError, match="recovery_anchor"):
        write(recovery_anchor="first")
