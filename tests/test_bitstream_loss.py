"""Format 2 under loss: numbered packets, references, concealment, recovery, long streams.

Every lossy decode is compared with the loss-free decode of the same stream: a frame the
reader outputs as decoded (not held) must carry exactly the loss-free values.
"""

import io
import itertools
import struct
import tracemalloc
from fractions import Fraction

import numpy as np
import pytest
from bitstream_helpers import random_walk

from facecodec.bitstream.chunks import FRAME_KINDS, INTER, INTER_REF, INTRA, ChunkParser, chunk
from facecodec.bitstream.container import (
    MAX_REF,
    DecodedFrame,
    FcsReader,
    FcsWriter,
    Header,
)
from facecodec.bitstream.prior import Prior
from facecodec.bitstream.streams import TABLES
from facecodec.errors import FormatError

TABLE = TABLES["sup_unsup_expr"]
PRIOR = Prior.untrained(TABLE)
FRAMES = random_walk(TABLE, 60, seed=5, step=0.002)


def header(**kw) -> Header:
    kw = {"intra_period": 30, "n_sources": 1, **kw}
    return Header(TABLE, PRIOR.id, Fraction(15), **kw)


def write(frames=FRAMES, feedback=None, table_prior=PRIOR, **kw) -> tuple[bytes, list[bytes]]:
    """The stream and its chunks in sending order (the header first)."""
    hkw = {k: kw.pop(k) for k in ("intra_period", "packet_frames") if k in kw}
    chains = kw.pop("chains", 1)
    out = io.BytesIO()
    w = FcsWriter(out, header(**hkw), table_prior, **kw)
    w.set_chains(chains)
    parts = [out.getvalue()]
    w.add_source(0, "jpeg", 8, 8, b"\xff\xd8fake", frames[0])
    parts.append(out.getvalue()[len(b"".join(parts)):])
    for i, f in enumerate(frames):
        if feedback and i in feedback:  # frame, or (frame, copies)
            ask = feedback[i] if isinstance(feedback[i], tuple) else (feedback[i],)
            w.recover_from(*ask)
        w.add_frame(f)
        new = out.getvalue()[len(b"".join(parts)):]
        parts += split(new)
    w.close()
    parts += split(out.getvalue()[len(b"".join(parts)):])
    return out.getvalue(), [p for p in parts if p]


def split(data: bytes) -> list[bytes]:
    p = ChunkParser()
    p.feed(data)
    p.close()
    return [data[c.offset : c.offset + c.nbytes] for c in p.chunks()]


def kind(part: bytes) -> int:
    return part[0]


def frames_of(parts, **kw) -> list[DecodedFrame]:
    return [e for e in FcsReader(iter(parts), prior=PRIOR, tolerant=True, **kw)
            if isinstance(e, DecodedFrame)]


def check_against(lossy: list[DecodedFrame], ref: list[DecodedFrame]) -> int:
    """Asserts nothing wrong is shown and the length is kept; returns frames held."""
    assert [f.index for f in lossy] == [f.index for f in ref]
    for a, b in zip(lossy, ref, strict=True):
        if not a.held:
            for k in b.values:
                np.testing.assert_array_equal(a.values[k], b.values[k])
    return sum(f.held for f in lossy)


def frame_parts(parts):
    return [i for i, p in enumerate(parts) if i > 0 and kind(p) in FRAME_KINDS]


def test_every_single_loss_is_concealed_never_decoded_wrong():
    data, parts = write()
    ref = frames_of(parts)
    assert len(ref) == len(FRAMES) and not any(f.held for f in ref)
    for i in frame_parts(parts):
        lossy = frames_of(parts[:i] + parts[i + 1 :])
        held = check_against(lossy, ref)
        lost = int(lossy[[f.held for f in lossy].index(True)].index) if held else None
        # plain stream: held from the lost frame to the next intra frame (or the end)
        assert held == min(30 * (lost // 30 + 1), len(FRAMES)) - lost


def test_duplicates_reorders_and_losses_at_the_end_keep_the_length():
    _, parts = write()
    ref = frames_of(parts)
    f = frame_parts(parts)
    dup = parts[: f[5]] + [parts[f[5]], parts[f[5]]] + parts[f[5] + 1 :]
    assert check_against(frames_of(dup), ref) == 0
    swapped = list(parts)
    swapped[f[7]], swapped[f[8]] = swapped[f[8]], swapped[f[7]]
    check_against(frames_of(swapped), ref)
    tail = parts[: f[-3]] + parts[-1:]  # the last frames lost, the end chunk arrives
    assert check_against(frames_of(tail), ref) == 3


def test_a_packet_of_another_stream_is_refused_by_its_reference_check():
    _, parts = write()
    other = random_walk(TABLE, 60, seed=99, step=0.002)
    _, foreign = write(other)
    ref = frames_of(parts)
    i = frame_parts(parts)[10]
    spliced = parts[:i] + [foreign[i]] + parts[i + 1 :]
    assert foreign[i] != parts[i] and kind(foreign[i]) == INTER
    r = FcsReader(iter(spliced), prior=PRIOR, tolerant=True)
    out = [e for e in r if isinstance(e, DecodedFrame)]
    assert check_against(out, ref) > 0
    assert any("reference check" in s.reason for s in r.skipped)
    with pytest.raises(FormatError, match="reference check"):
        list(FcsReader(iter(spliced), prior=PRIOR))


def test_recovery_points_and_their_copies():
    data, parts = write(recovery_period=3, redundancy=1)
    ref = frames_of(parts)
    kinds = [kind(p) for p in parts]
    assert kinds.count(INTER_REF) >= 2 * (len(FRAMES) // 3 - 2)  # primary + copy
    # losing one copy of any recovery point costs nothing; losing any inter frame costs
    # at most the frames up to the next recovery point
    for i in frame_parts(parts):
        held = check_against(frames_of(parts[:i] + parts[i + 1 :]), ref)
        assert held <= 3, (i, kinds[i])
    # strict decoding of the protected stream: copies are not errors
    assert len([e for e in FcsReader(data, prior=PRIOR) if isinstance(e, DecodedFrame)]) \
        == len(FRAMES)


def test_feedback_codes_against_the_frame_the_receiver_holds():
    # the receiver lost frame 10's packet and says at frame 13 that it holds frame 9
    _, parts = write(feedback={13: 9})
    ref = frames_of(parts)
    f = frame_parts(parts)
    assert kind(parts[f[13]]) == INTER_REF
    lossy = frames_of(parts[: f[10]] + parts[f[10] + 1 :])
    check_against(lossy, ref)
    assert [x.index for x in lossy if x.held] == [10, 11, 12]
    # a frame the writer no longer holds falls back to intra
    _, parts = write(feedback={40: 40 - MAX_REF - 5})
    assert kind(parts[frame_parts(parts)[40]]) == INTRA


def test_two_chains_lose_every_other_frame_until_a_recovery():
    _, parts = write(chains=2)
    ref = frames_of(parts)
    f = frame_parts(parts)
    # after the intra frame (0, and 30) each frame refers two back
    assert [kind(parts[f[i]]) for i in (0, 1, 2, 3, 29, 30, 31, 32)] == [
        INTRA, INTER, INTER_REF, INTER_REF, INTER_REF, INTRA, INTER, INTER_REF]
    # frame 10 lost: its chain (the even frames) is held up to the next intra frame,
    # the odd frames are drawn: a picture every other frame, no freeze
    lossy = frames_of(parts[: f[10]] + parts[f[10] + 1 :])
    check_against(lossy, ref)
    assert [x.index for x in lossy if x.held] == list(range(10, 30, 2))
    # the receiver asks at frame 13 for frames against 9, twice: both chains resume
    _, parts = write(chains=2, feedback={13: (9, 2)})
    ref = frames_of(parts)
    f = frame_parts(parts)
    lossy = frames_of(parts[: f[10]] + parts[f[10] + 1 :])
    check_against(lossy, ref)
    assert [x.index for x in lossy if x.held] == [10, 12]
    with pytest.raises(ValueError, match="one frame per packet"):
        write(chains=2, packet_frames=2)


def test_a_request_answered_twice_survives_the_loss_of_its_first_answer():
    # the receiver lost frame 10 and asks at frame 13: frames 13 and 14 both refer to 9
    _, parts = write(feedback={13: (9, 2)})
    ref = frames_of(parts)
    f = frame_parts(parts)
    assert [kind(parts[f[i]]) for i in (12, 13, 14, 15)] == [INTER, INTER_REF, INTER_REF,
                                                             INTER]
    # the first answer lost too: the second resumes the picture one frame later
    lossy = frames_of([p for i, p in enumerate(parts) if i not in (f[10], f[13])])
    check_against(lossy, ref)
    assert [x.index for x in lossy if x.held] == [10, 11, 12, 13]
    # both answers arrive: no frame is held beyond the first loss
    lossy = frames_of(parts[: f[10]] + parts[f[10] + 1 :])
    check_against(lossy, ref)
    assert [x.index for x in lossy if x.held] == [10, 11, 12]
    with pytest.raises(ValueError, match="copies"):
        write(feedback={13: (9, 0)})


def test_a_frame_number_far_ahead_is_bounded():
    """A crafted packet numbered 2^32 - 2 must not make the reader emit held frames
    forever: strict refuses it, tolerant skips it."""
    data, parts = write(frames=FRAMES[:10])
    good = FcsReader(iter(parts), prior=PRIOR)
    list(good)
    payload = bytes([0xFE, 0xFF, 0xFF, 0xFF, 0x0F]) + b"\x01\x02"
    evil = parts[:5] + [chunk(INTRA, payload)] + parts[5:]
    out = frames_of(evil)
    assert len(out) == 10
    with pytest.raises(FormatError):
        list(FcsReader(iter(evil), prior=PRIOR))


def test_payloads_must_be_exactly_what_an_encoder_writes():
    _, parts = write(frames=FRAMES[:5])
    p = parts[3]  # frame 1: inter
    assert kind(p) == INTER
    ck = next(iter(ChunkParser_chunks(p)))
    head = ck.payload[:2]  # frame number, reference check
    # (an empty payload is refused only when no values encode to it: with the untrained
    # prior, the most likely symbols everywhere do, exactly as an encoder would write it)
    for bad in (ck.payload[2:] + b"\x00\x01", ck.payload[2:-1], ck.payload[2:] + b"\x07"):
        evil = parts[:3] + [chunk(INTER, head + bad)] + parts[4:]
        with pytest.raises(FormatError, match="corrupt frame packet"):
            list(FcsReader(iter(evil), prior=PRIOR))


def ChunkParser_chunks(data):  # noqa: N802 (a helper named after what it wraps)
    p = ChunkParser()
    p.feed(data)
    p.close()
    return p.chunks()


def test_live_decoding_never_waits_for_bytes_it_does_not_need():
    """After garbage that claims a 64 KiB chunk, decoding resumes one packet after the
    next good one (the old reader read 64 KiB first: ~110 s of a 5 kbps stream)."""
    _, parts = write(frames=FRAMES[:40])
    f = frame_parts(parts)
    garbage = bytes([INTRA, 0xFF, 0xFF, 0x03]) + b"\x00" * 20
    sent = parts[: f[29]] + [garbage] + parts[f[29] + 1 :]
    consumed = 0

    def packets():
        nonlocal consumed
        for p in sent:
            consumed += 1
            yield p

    r = FcsReader(packets(), prior=PRIOR, tolerant=True)
    for e in r:
        if isinstance(e, DecodedFrame) and e.index == 30:
            assert not e.held
            # the intra packet of frame 30, and the next one that confirms the resync
            assert consumed == f[30] + 2
            break


def test_garbage_is_parsed_in_linear_time_and_bounded_memory():
    """1 MiB of bytes that look like chunk starts: the reader ends, holding at most one
    chunk limit of bytes (the old resync was quadratic)."""
    _, parts = write(frames=FRAMES[:5])
    rng = np.random.default_rng(0)
    junk = rng.choice([INTRA, INTER, 0x10, 0x7F, 0xFF, 0x80, 0x03], size=1 << 20).astype(
        np.uint8).tobytes()
    tracemalloc.start()
    out = frames_of(parts[:4] + [junk] + parts[4:])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(out) == 5
    assert peak < 32 << 20


def test_thirty_minute_stream_through_the_bitstream_in_constant_memory():
    """27,000 frames (30 min at 15 fps) of landmarks: written and read back in one pass
    (the old reader recursed once per chunk and failed after ~987 frames), with the
    reader's state bounded whatever the length."""
    table = TABLES["landmarks"]
    prior = Prior.untrained(table)
    n = 27_000
    walk = random_walk(table, 300, seed=1, step=0.003)
    frames = (walk[i % 300] if (i // 300) % 2 == 0 else walk[299 - i % 300] for i in range(n))
    out = io.BytesIO()
    w = FcsWriter(out, Header(table, prior.id, Fraction(15), intra_period=30), prior,
                  recovery_period=5, redundancy=1)
    for f in frames:
        w.add_frame(f)
    w.close()
    data = out.getvalue()
    r = FcsReader(io.BufferedReader(io.BytesIO(data)), prior=prior)
    count, biggest = 0, 0
    for e in r:
        count += isinstance(e, DecodedFrame)
        if count % 1000 == 0:
            biggest = max(biggest, len(r._states), r.stream.buffered)
    assert count == n and r.ended
    assert biggest <= (1 << 16) + MAX_REF + 2


def test_end_chunk_and_header_fields_are_range_checked():
    data, _ = write(frames=FRAMES[:3])
    body_len = struct.unpack("<H", data[6:8])[0]
    assert len(data) > 8 + body_len + 4
    bad = itertools.islice(iter([data[:7]]), 1)
    with pytest.raises(FormatError, match="truncated"):
        FcsReader(bad, prior=PRIOR)
    with pytest.raises(ValueError, match="n_sources"):
        header(n_sources=200)
    with pytest.raises(ValueError, match="nested"):
        header(info={"a": [[[[[[[[[[1]]]]]]]]]]})


def test_a_reference_255_back_in_a_packet_of_several_frames():
    """The writer looks the reference up before it forgets old states (a packet of 10
    frames coded 255 frames back used to lose its reference to the pruning)."""
    frames = random_walk(TABLE, 280, seed=7, step=0.002)
    data, parts = write(frames, feedback={264: 9}, packet_frames=10, intra_period=1000)
    assert any(kind(p) == INTER_REF for p in parts)
    out = [e for e in FcsReader(data, prior=PRIOR) if isinstance(e, DecodedFrame)]
    assert len(out) == 280 and not any(f.held for f in out)


def test_a_repeated_intra_frame_survives_the_loss_of_either_copy():
    """repeat_intra: every intra frame is sent twice (and nothing else is); with recovery
    points anchored on it, losing one copy costs no frame."""
    _, parts = write(recovery_period=5, recovery_anchor="intra", repeat_intra=1)
    ref = frames_of(parts)
    kinds = [kind(p) for p in parts]
    assert kinds.count(INTRA) == 2 * 2 and kinds.count(INTER_REF) == 10  # 60 frames
    for i in [i for i in frame_parts(parts) if kinds[i] == INTRA]:
        assert check_against(frames_of(parts[:i] + parts[i + 1 :]), ref) == 0
    both = [i for i in frame_parts(parts) if kinds[i] == INTRA][2:]  # frame 30, twice
    lossy = frames_of([p for i, p in enumerate(parts) if i not in both])
    assert [f.index for f in lossy if f.held] == list(range(30, 60))
    _, parts = write(repeat_intra=2, redundancy=1, recovery_period=5)  # the larger count
    kinds = [kind(p) for p in parts]
    assert kinds.count(INTRA) == 3 * 2 and kinds.count(INTER_REF) == 2 * 10
    with pytest.raises(ValueError, match="repeat_intra"):
        write(repeat_intra=3)


def test_protection_presets_resolve_and_refuse_what_a_stream_cannot_carry():
    from facecodec.bitstream.protection import PRESETS, Protection, resolve

    assert resolve() == Protection() == PRESETS["none"]
    strong = resolve("strong", fec=4)
    assert (strong.recovery_period, strong.recovery_anchor, strong.repeat_intra,
            strong.fec) == (6, "intra", 2, 4)
    assert resolve(strong) == strong and resolve("light", fec=None) == PRESETS["light"]
    _, parts = write(**PRESETS["strong"].writer_args())  # every preset is a writer's
    assert check_against(frames_of(parts), frames_of(parts)) == 0
    for bad, match in [({"preset": "max"}, "one of none, light, strong"),
                       ({"fec": 1}, "fec must be 0"), ({"recovery_period": 256}, "0..255"),
                       ({"recovery_anchor": "first"}, "recovery_anchor"),
                       ({"repeat_intra": 3}, r"repeat_intra must be an integer in 0\.\.2"),
                       ({"repeat_intra": True}, "repeat_intra"),
                       ({"frames": 3}, "unknown protection setting")]:
        with pytest.raises(ValueError, match=match):
            resolve(**bad)
