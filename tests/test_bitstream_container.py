"""The .fcs container: round trips, incremental reading, and every kind of bad input."""

import io
import struct
from fractions import Fraction

import numpy as np
import pytest
from bitstream_helpers import random_walk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from facecodec.bitstream.container import (
    MAGIC,
    Crop,
    DecodedFrame,
    FcsReader,
    FcsWriter,
    Header,
    SourceFrame,
    chunk,
)
from facecodec.bitstream.prior import Prior
from facecodec.bitstream.streams import TABLES
from facecodec.errors import FormatError, ModelMismatchError

TABLE = TABLES["sup_unsup_expr"]
PRIOR = Prior.untrained(TABLE)
FRAMES = random_walk(TABLE, 75, seed=3, step=0.002)


def write(frames=FRAMES, intra_period=30, group=1, sources=2, crop_at=None, **kw) -> bytes:
    buf = io.BytesIO()
    header = Header(TABLE, PRIOR.id, Fraction(30000, 1001), intra_period=intra_period,
                    packet_frames=group, n_sources=sources, model_id="test-model",
                    model_hash=b"h" * 16, info={"note": "test"}, **kw)
    w = FcsWriter(buf, header, PRIOR)
    for i in range(sources):
        w.add_source(i, "jpeg", 256, 256, bytes([i]) * 100, frames[i])
    for i, f in enumerate(frames):
        if i == crop_at:
            w.add_crop((10.0, 20.0, 300.0), (640, 480))
        w.add_frame(f)
    w.close()
    return buf.getvalue()


def decoded(data: bytes, **kw) -> list:
    return list(FcsReader(data, prior=PRIOR, **kw))


def check_values(frames: list[DecodedFrame], expected: list[dict]) -> None:
    assert len(frames) == len(expected)
    for fr, f in zip(frames, expected, strict=True):
        q = TABLE.dequantize(TABLE.quantize(f))
        for k in q:
            np.testing.assert_array_equal(fr.values[k], q[k])


@pytest.mark.parametrize("group", [1, 4, 30])
@pytest.mark.parametrize("intra_period", [1, 7, 30])
def test_roundtrip(group, intra_period):
    data = write(intra_period=intra_period, group=group, crop_at=40)
    r = FcsReader(data, prior=PRIOR)
    assert r.header.fps == Fraction(30000, 1001)
    assert r.header.model_id == "test-model" and r.header.info == {"note": "test"}
    events = list(r)
    sources = [e for e in events if isinstance(e, SourceFrame)]
    frames = [e for e in events if isinstance(e, DecodedFrame)]
    crops = [e for e in events if isinstance(e, Crop)]
    assert [s.image for s in sources] == [b"\0" * 100, b"\1" * 100]
    check_values(frames, FRAMES)
    assert crops[0].frame == 40 and crops[0].box == (10.0, 20.0, 300.0)
    intra = [f.index for f in frames if f.intra]
    assert 40 in intra  # a crop change starts an intra frame
    assert all(i % intra_period == 0 or i == 40 for i in intra)
    # every frame byte is attributed to some frame
    frame_bytes = sum(f.packet_bits for f in frames) / 8
    assert abs(frame_bytes - r.chunk_bytes["frames"]) < 1e-6


def test_incremental_reading_from_a_pipe_like_stream():
    """The reader asks only for bytes it needs: it works on a stream that returns
    fewer bytes than asked for only at its end, one chunk at a time."""
    data = write()

    class Trickle(io.RawIOBase):
        def __init__(self):
            self.pos = 0
            self.max_read = 0

        def read(self, n=-1):
            self.max_read = max(self.max_read, n)
            out = data[self.pos : self.pos + n]
            self.pos += len(out)
            return out

    src = Trickle()
    frames = [e for e in FcsReader(src, prior=PRIOR) if isinstance(e, DecodedFrame)]
    assert len(frames) == len(FRAMES)
    assert src.max_read < 1000  # never slurps the file


def expect_error(data: bytes, match: str, **kw) -> FormatError:
    with pytest.raises(FormatError, match=match) as e:
        decoded(data, **kw)
    assert "Traceback" not in str(e.value)
    return e.value


def test_bad_headers():
    data = write()
    expect_error(b"", "truncated")
    expect_error(b"GIF89a" + data[6:], "not a .fcs stream")
    newer = bytearray(data)
    newer[4] = 9
    expect_error(bytes(newer), "newer than this decoder")
    flipped = bytearray(data)
    flipped[20] ^= 1
    expect_error(bytes(flipped), "header CRC mismatch")


def test_wrong_prior_and_model():
    data = write()
    other = Prior.fit(TABLE, [{s.name: np.zeros((3, s.n_coded), np.int64) for s in TABLE}], "x")
    with pytest.raises(ModelMismatchError, match="prior"):
        list(FcsReader(data, prior=other))
    with pytest.raises(ModelMismatchError, match="model"):
        FcsReader(data, prior=PRIOR, model_id="another-model")
    with pytest.raises(ModelMismatchError, match="no prior"):
        FcsReader(data, prior_lookup=lambda _id: None)


def test_absurd_length_is_refused_before_reading():
    data = write(sources=0)
    end_of_header = data.index(b"\x02", 8 + struct.unpack("<H", data[6:8])[0] + 4)
    bad = data[:end_of_header] + bytes([0x02, 0xFF, 0xFF, 0xFF, 0x7F]) + b"\0" * 10
    e = expect_error(bad, r"claims \d+ bytes \(limit")
    assert e.offset == end_of_header


def test_truncation_at_every_chunk_boundary_and_inside():
    data = write(frames=FRAMES[:12], sources=1)
    for cut in range(len(data) - 1, 0, -7):
        expect_error(data[:cut], "truncated|without an end chunk|CRC")


@pytest.mark.parametrize("where", [1, 4], ids=["length-field", "payload"])
def test_tolerant_mode_holds_frames_and_resumes_at_next_intra(where):
    data = write(intra_period=10)
    r = FcsReader(data, prior=PRIOR)
    starts = []
    for ev in r:
        if isinstance(ev, DecodedFrame) and ev.index in (13, 14):
            starts.append(r.stream.offset)
    # damage the packet of frame 14: its length field (the reader loses the chunk
    # boundaries and must scan for the next intra packet) or its payload
    bad = bytearray(data)
    bad[starts[0] + where] ^= 0xFF
    expect_error(bytes(bad), "CRC mismatch|truncated")
    r = FcsReader(bytes(bad), prior=PRIOR, tolerant=True)
    frames = [e for e in r if isinstance(e, DecodedFrame)]
    assert len(frames) == len(FRAMES)
    held = [f.index for f in frames if f.held]
    assert held == list(range(14, 20))  # frame 20 is the next intra frame
    assert len(r.skipped) == 1 and r.skipped[0].frames == 6
    for f in frames[14:20]:
        for k in f.values:
            np.testing.assert_array_equal(f.values[k], frames[13].values[k])
    check_values(frames[20:], FRAMES[20:])


def test_unknown_chunks():
    data = write(frames=FRAMES[:5], sources=0)
    end = data.rindex(b"\x7f")  # the end chunk
    # (0x41: audio, 2.2; 0x42: source parts, 2.3; 0x43: base layer, 2.5; 0x44: short
    # audio, 2.6)
    ancillary = chunk(0x45, b"future metadata")
    frames = [e for e in decoded(data[:end] + ancillary + data[end:])
              if isinstance(e, DecodedFrame)]
    assert len(frames) == 5
    expect_error(data[:end] + chunk(0x30, b"critical") + data[end:], "unknown chunk kind")


VALID = write(frames=FRAMES[:40], intra_period=10, sources=1)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)),
                min_size=1, max_size=8),
       st.integers(0, len(VALID)), st.booleans())
def test_fuzz_mutated_files(mutations, cut, tolerant):
    """Any mutation: a FormatError (strict) or a bounded decode (tolerant), never a crash."""
    data = bytearray(VALID[:cut] if cut > len(VALID) // 2 else VALID)
    for pos, val in mutations:
        if pos < len(data):
            data[pos] = val
    try:
        frames = [e for e in decoded(bytes(data), tolerant=tolerant)
                  if isinstance(e, DecodedFrame)]
    except FormatError as e:
        assert e.offset is None or 0 <= e.offset <= len(data)
        return
    # a decode that succeeded yields at most the frames the file can describe
    assert len(frames) <= 40 + 4096


def test_magic_constant():
    assert MAGIC == b"\x89FCS"
