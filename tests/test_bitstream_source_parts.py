"""Paced sources (format 2.3): a source chunk sent in parts between frame packets, within
a rate, and put back together by the reader."""

from __future__ import annotations

import io
from fractions import Fraction

import numpy as np
import pytest
from bitstream_helpers import random_walk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from facecodec.bitstream.chunks import (
    MAX_PARTS,
    MAX_PAYLOAD,
    SOURCE,
    SOURCE_PART,
    Chunk,
    ChunkParser,
    varint,
)
from facecodec.bitstream.container import (
    PART_BYTES,
    DecodedFrame,
    FcsReader,
    FcsWriter,
    Header,
    SourceFrame,
    chunk,
)
from facecodec.bitstream.header import header_length
from facecodec.bitstream.prior import Prior
from facecodec.bitstream.streams import TABLES
from facecodec.errors import FormatError

TABLE = TABLES["sup_unsup_expr"]
PRIOR = Prior.untrained(TABLE)
FRAMES = random_walk(TABLE, 60, seed=5, step=0.002)
RNG = np.random.default_rng(0)
IMAGES = [bytes(RNG.integers(0, 256, n, dtype=np.uint8)) for n in (300, 2500, 3100)]


def writer(buf: io.BytesIO, rate: float = 200.0, sources: int = 3) -> FcsWriter:
    header = Header(TABLE, PRIOR.id, Fraction(15), intra_period=30, n_sources=sources,
                    model_id="test-model", model_hash=b"h" * 16)
    return FcsWriter(buf, header, PRIOR, source_rate=rate)


def paced_stream(rate: float = 200.0, frames: int = 60) -> tuple[bytes, list[int]]:
    """Slot 0 sent whole, slots 1 and 2 paced; also the paced bytes written per frame."""
    buf = io.BytesIO()
    w = writer(buf, rate)
    w.add_source(0, "webp", 64, 64, IMAGES[0], FRAMES[0])
    for slot in (1, 2):
        assert w.add_source(slot, "webp", 256, 256, IMAGES[slot], FRAMES[slot],
                            paced=True) == b""
    per_frame = []
    for f in FRAMES[:frames]:
        before = w.paced_bytes
        w.add_frame(f)
        per_frame.append(w.paced_bytes - before)
    w.close()
    return buf.getvalue(), per_frame


def events(data: bytes, **kw) -> list:
    return list(FcsReader(data, prior=PRIOR, **kw))


def test_paced_sources_arrive_whole_after_the_frames_they_waited_for():
    data, per_frame = paced_stream()
    ev = events(data)
    sources = [e for e in ev if isinstance(e, SourceFrame)]
    assert [s.index for s in sources] == [0, 1, 2]
    assert [s.image for s in sources] == IMAGES
    for s in sources:
        q = TABLE.dequantize(TABLE.quantize(FRAMES[s.index]))
        for k in q:
            np.testing.assert_array_equal(s.values[k], q[k])
    # where each source comes: after the frames whose allowance paid for its parts
    order = [e.index if isinstance(e, DecodedFrame) else f"s{e.index}" for e in ev
             if isinstance(e, DecodedFrame | SourceFrame)]
    assert order[0] == "s0"
    frames_before = {s: order.index(f"s{s}") - 1 for s in (1, 2)}  # (minus s0)
    need = {1: len(IMAGES[1]), 2: len(IMAGES[1]) + len(IMAGES[2])}
    for s in (1, 2):
        assert frames_before[s] * 200 >= need[s]  # never ahead of the allowance
        assert frames_before[s] * 200 <= need[s] + 2 * PART_BYTES + 200
    frames = [e for e in ev if isinstance(e, DecodedFrame)]
    assert len(frames) == 60


def test_the_allowance_is_never_exceeded_and_a_file_holds_every_source():
    _, per_frame = paced_stream(rate=150.0)
    spent = np.cumsum(per_frame)
    assert np.all(spent <= 150.0 * np.arange(1, len(spent) + 1))
    # too slow a rate for 10 frames: close() sends the rest before the end chunk
    data, per_frame = paced_stream(rate=50.0, frames=10)
    assert sum(per_frame) <= 500
    assert [s.image for s in events(data) if isinstance(s, SourceFrame)] == IMAGES


def test_an_allowance_is_not_saved_up_while_nothing_waits():
    buf = io.BytesIO()
    w = writer(buf, rate=100.0)
    w.add_source(0, "webp", 64, 64, IMAGES[0], FRAMES[0])
    for f in FRAMES[:30]:
        w.add_frame(f)  # nothing paced: no credit builds up
    w.add_source(1, "webp", 256, 256, IMAGES[1], FRAMES[1], paced=True)
    before = w.paced_bytes
    w.add_frame(FRAMES[30])
    assert w.paced_bytes == before  # one frame's allowance does not pay for a part


def test_a_newer_source_for_a_slot_replaces_the_waiting_one():
    buf = io.BytesIO()
    w = writer(buf, rate=300.0)
    w.add_source(0, "webp", 64, 64, IMAGES[0], FRAMES[0])
    w.add_source(1, "webp", 256, 256, IMAGES[1], FRAMES[1], paced=True)
    for f in FRAMES[:5]:  # part of it goes out
        w.add_frame(f)
    assert 0 < w.paced_bytes < len(IMAGES[1])
    w.add_source(1, "webp", 256, 256, IMAGES[2], FRAMES[2], paced=True)
    for f in FRAMES[5:40]:
        w.add_frame(f)
    w.close()
    sources = [e for e in events(buf.getvalue()) if isinstance(e, SourceFrame)]
    assert [(s.index, s.image) for s in sources] == [(0, IMAGES[0]), (1, IMAGES[2])]


def test_a_small_source_goes_whole_and_pacing_needs_a_rate():
    buf = io.BytesIO()
    w = writer(buf, rate=0.0)
    assert w.add_source(0, "webp", 64, 64, b"x" * 100, FRAMES[0], paced=True) != b""
    with pytest.raises(ValueError, match="source_rate"):
        w.add_source(1, "webp", 64, 64, IMAGES[2], FRAMES[1], paced=True)
    with pytest.raises(ValueError, match="source_rate"):
        writer(io.BytesIO(), rate=float("nan"))


def _parts(data: bytes) -> list[tuple[int, int]]:
    """(offset, length) of every source-part chunk of a stream."""
    start = header_length(data[:8], "test")
    parser = ChunkParser(start)
    parser.feed(data[start:])
    parser.close()
    return [(c.offset, c.nbytes) for c in parser.chunks()
            if isinstance(c, Chunk) and c.kind == SOURCE_PART]


def test_a_lost_part_loses_that_source_only():
    data, _ = paced_stream()
    parts = _parts(data)
    assert len(parts) == 3 + 4  # 2.5 KB and 3.1 KB in 1 KB parts
    off, n = parts[1]  # the second part of slot 1
    lost = data[:off] + data[off + n:]
    with pytest.raises(FormatError, match="a part lost"):
        events(lost)
    r = FcsReader(lost, prior=PRIOR, tolerant=True)
    ev = list(r)
    assert [s.index for s in ev if isinstance(s, SourceFrame)] == [0, 2]
    assert len([e for e in ev if isinstance(e, DecodedFrame)]) == 60
    assert not any(e.held for e in ev if isinstance(e, DecodedFrame))
    assert any("part lost" in s.reason for s in r.skipped)
    # a duplicated part: refused strictly, ignored by a tolerant reader
    off, n = parts[4]
    dup = data[:off + n] + data[off:off + n] + data[off + n:]
    with pytest.raises(FormatError):
        events(dup)
    assert [s.image for s in events(dup, tolerant=True) if isinstance(s, SourceFrame)] == IMAGES


def test_a_stream_cut_inside_a_source_says_so():
    data, _ = paced_stream(rate=50.0, frames=10)
    off, n = _parts(data)[-1]
    cut = data[:off] + data[off + n:]  # the last part never came; the end chunk did
    with pytest.raises(FormatError, match="parts before the end"):
        events(cut)
    r = FcsReader(cut, prior=PRIOR, tolerant=True)
    assert [s.index for s in r if isinstance(s, SourceFrame)] == [0, 1]
    assert any("parts before the end" in s.reason for s in r.skipped)


def _with(data: bytes, extra: bytes) -> bytes:
    end = data.rindex(b"\x7f")
    return data[:end] + extra + data[end:]


@pytest.mark.parametrize("payload, match", [
    (bytes([7]) + varint(0) + varint(2) + b"x", "beyond the header"),
    (bytes([1]) + varint(0) + varint(1) + b"x", f"2..{MAX_PARTS} parts"),
    (bytes([1]) + varint(0) + varint(MAX_PARTS + 1) + b"x", "parts"),
    (bytes([1]) + varint(3) + varint(3) + b"x", "part 3 of 3"),
    (bytes([1]) + varint(0) + varint(300), "not empty"),
    (bytes([1]) + varint(1) + varint(2) + b"x", "its part 0"),
    (b"\x01\x00", "too short"),
])
def test_malformed_parts_are_refused(payload, match):
    data, _ = paced_stream()
    with pytest.raises(FormatError, match=match):
        events(_with(data, chunk(SOURCE_PART, payload)))
    events(_with(data, chunk(SOURCE_PART, payload)), tolerant=True)  # no crash


def test_parts_cannot_add_up_beyond_a_source_chunk():
    data, _ = paced_stream()
    n = MAX_PARTS  # each part as long as a payload allows: more than a source chunk
    body = b"".join(chunk(SOURCE_PART, bytes([1]) + varint(k) + varint(n) + b"\0" * 4100)
                    for k in range(n))
    assert n * 4100 > MAX_PAYLOAD[SOURCE]
    with pytest.raises(FormatError, match="parts beyond"):
        events(_with(data, body))


VALID = paced_stream(rate=120.0, frames=40)[0]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)),
                min_size=1, max_size=6), st.booleans())
def test_fuzz_paced_streams(mutations, tolerant):
    """Any mutation of a stream with source parts: a FormatError (strict) or a bounded
    decode (tolerant), never a crash; every source that comes out is one that was sent."""
    data = bytearray(VALID)
    for pos, val in mutations:
        data[pos] = val
    try:
        ev = events(bytes(data), tolerant=tolerant)
    except FormatError:
        return  # strict, or a damaged header (refused in either mode)
    # a damaged part fails its CRC: a source either comes out whole or not at all
    assert all(s.image in IMAGES for s in ev if isinstance(s, SourceFrame))
