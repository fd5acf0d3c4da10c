"""Fuzzing the stream reader and the source-image checks (issue #16): a few hundred
derandomized structural mutations of valid streams (tests/stream_fuzzing.py; the
benchmark bench/fuzz_stream.py runs >= 10,000). Strict reading raises only
FacecodecError, tolerant reading never raises after the header, no case takes over
TIME_LIMIT CPU seconds, and memory stays bounded."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stream_fuzzing import (
    TIME_LIMIT,
    Chunk,
    Corpus,
    crafted_images,
    images,
    quiet_opencv,
    run_case,
    source_fields,
    source_payload,
    split,
    streams,
)

from facecodec.bitstream.limits import MAX_SOURCE_SIDE
from facecodec.errors import FormatError
from facecodec.imagecodec import decode_image, image_info

CORPUS = Corpus.make()
CASES = 300


@pytest.fixture(scope="module", autouse=True)
def _quiet():
    quiet_opencv()


def test_the_base_streams_are_valid_and_split_into_chunks():
    for data, s in zip(CORPUS.bases, CORPUS.split, strict=True):
        assert s.tail == b"" and len(s.chunks) >= 6
        assert s.to_bytes() == data  # the harness's grammar is the writer's
        out = run_case(data, CORPUS.prior)
        assert out.ok and out.strict == "end" and not out.anomalies, out


def test_crafted_images_in_a_stream_are_refused_before_decoding():
    """Each hostile image in the first source chunk, declared at the size it claims:
    strict reading ends with a FormatError about the image, not a decoded image."""
    for image in crafted_images():
        s = split(CORPUS.bases[0])
        slot, codec, _, _, _, values = source_fields(s.chunks[0].payload)
        try:
            _, w, h = image_info(image)
        except FormatError:  # not an image at all: declare any size
            w = h = 32
        s.chunks[0] = Chunk(0x10, source_payload(slot, codec, w, h, image, values))
        out = run_case(s.to_bytes(), CORPUS.prior)
        assert out.ok, out.detail
        assert out.strict.startswith("FormatError: source"), (out.strict, image[:16])


@settings(max_examples=CASES, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(streams(CORPUS))
def test_mutated_streams_fail_cleanly(case):
    data, log = case
    out = run_case(data, CORPUS.prior)
    assert out.ok, (f"{out.kind} after {log}: {out.detail}\ninput ({len(data)} bytes): "
                    f"{data.hex()}")


@settings(max_examples=CASES, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(images(), st.sampled_from([None, "jpeg", "webp", "png"]),
       st.sampled_from([None, 16, 40, 16383]))
def test_damaged_images_fail_cleanly(data, codec, side):
    """The header parser and the decoders behind it raise FormatError or decode an image
    of the size its header gives, within the size cap."""
    try:
        image = decode_image(data, codec=codec, width=side, height=side)
    except FormatError:
        return
    _, w, h = image_info(data)
    assert image.shape == (h, w, 3) and max(w, h) <= MAX_SOURCE_SIDE


def test_memory_stays_bounded(tmp_path):
    """A fresh process running the benchmark's path on 150 cases never holds 1 GB (in its
    own process: this one's peak includes whatever the other tests loaded)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "fuzz.json"
    subprocess.run([sys.executable, str(root / "bench" / "fuzz_stream.py"), "--cases", "150",
                    "--out", str(out)], check=True, cwd=root, capture_output=True)
    row = json.loads(out.read_text())["results"][0]
    assert row["failures"] == 0 and row["hangs"] == 0
    assert row["peak_rss_mb"] < 1024, row


def test_a_hang_is_caught():
    import stream_fuzzing

    old = stream_fuzzing._strict
    stream_fuzzing._strict = lambda data, prior: [0 for _ in iter(int, 1)]  # never ends
    try:
        out = run_case(CORPUS.bases[0], CORPUS.prior, time_limit=0.2)
    finally:
        stream_fuzzing._strict = old
    assert out.kind == "hang" and not out.ok and out.seconds < 10 * TIME_LIMIT


def test_a_png_chunk_longer_than_the_image_is_refused_before_decoding():
    """Found by the fuzzer: OpenCV allocates what an IDAT length field claims (370 MB for
    one flipped byte of a 24x24 source)."""
    import struct

    import numpy as np

    from facecodec.imagecodec import encode_image

    png = encode_image(np.zeros((24, 24, 3), np.uint8), "png")
    assert decode_image(png, codec="png", width=24, height=24).shape == (24, 24, 3)
    i = png.index(b"IDAT") - 4
    bad = png[:i] + struct.pack(">I", 0x17000000) + png[i + 4 :]
    with pytest.raises(FormatError, match="chunk longer than the image"):
        decode_image(bad, codec="png", width=24, height=24)
