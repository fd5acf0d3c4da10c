"""The rate budget (issue #17, ``--kbps``): the plan (sender/budget.py) and the writer that
keeps it (``FcsWriter(all_in_rate=...)``)."""

from __future__ import annotations

import io
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
from bitstream_helpers import random_walk

from facecodec.bitstream.chunks import SOURCE_PART, Chunk, ChunkParser
from facecodec.bitstream.container import DecodedFrame, FcsReader, FcsWriter, Header
from facecodec.bitstream.header import header_length
from facecodec.bitstream.prior import Prior
from facecodec.bitstream.streams import TABLES
from facecodec.errors import InputError
from facecodec.examples import make_example_video
from facecodec.sender.budget import (
    BASE_MIN_KBPS,
    BudgetError,
    audio_all_kbps,
    base_crf,
    codec2_all_kbps,
    frame_kbps,
    plan_budget,
)

TABLE = TABLES["sup_unsup_expr"]


def point(deadband: float, bits: float) -> tuple[float, Prior]:
    """An operating point whose prior says ``bits`` per frame on held-out clips."""
    prior = Prior.untrained(TABLE, name=f"p{deadband:g}")
    prior.info.update(deadband=deadband, val_bits_per_frame={"prior": {"total": bits}})
    return deadband, prior


POINTS = [point(16, 274), point(0, 619), point(32, 232)]


def test_a_frame_costs_its_held_out_bits_plus_framing():
    # (232 + 56 bits of packet framing) x 15 frames/s
    assert frame_kbps(POINTS[2][1], 15) == pytest.approx(4.32)
    # 45-byte Opus packets every 60 ms, each in an 8-byte audio chunk (kind, length,
    # start sample: 4 bytes an hour into a call, CRC-16)
    assert audio_all_kbps(6.0) == pytest.approx(53 * 8 / 0.06 / 1000)


def test_the_cheapest_frames_the_sound_then_the_sources():
    plan = plan_budget(20, 15, POINTS, audio=True)
    assert plan.deadband == 32 and plan.frames_kbps == pytest.approx(4.32)
    # half of what the frames leave (of 95 % of 20, less 0.25 for the sources), in
    # 0.5 kbps steps, framed within that half
    assert plan.audio_kbps == 7.0 and plan.audio_all_kbps == pytest.approx(audio_all_kbps(7))
    assert plan.sources_kbps == pytest.approx(0.95 * 20 - 4.32 - plan.audio_all_kbps)
    # as many sources as that rest delivers in 30 s, at 3.5 KB each: 6.7 kbps -> 7
    assert plan.n_sources == int(plan.sources_kbps * 1000 / 8 * 30 / 3500) == 7
    assert plan_budget(20, 15, POINTS, audio=True, max_sources=1).n_sources == 1  # FOM
    assert plan_budget(30, 15, POINTS, audio=False).n_sources == 8  # what a receiver takes
    # sound never above speech's 12 kbps: the rest goes to the sources
    assert plan_budget(30, 15, POINTS, audio=True).audio_kbps == 11.5
    quiet = plan_budget(6, 15, POINTS, audio=False)
    assert quiet.audio_kbps is None and quiet.sources_kbps == pytest.approx(0.95 * 6 - 4.32)
    assert quiet.n_sources == 3  # never fewer than the default, however late they arrive
    assert "dead zone 32" in quiet.describe() and "no sound" in quiet.describe()


def test_a_base_layer_takes_what_the_frames_sound_and_three_sources_leave():
    plain = plan_budget(20, 15, POINTS, audio=False)
    layered = plan_budget(20, 15, POINTS, audio=False, base=True)
    assert plain.base_kbps == 0 and "base layer" not in plain.describe()
    reserve = 3 * 3500 * 8 / 30 / 1000  # three sources in 30 s
    assert layered.sources_kbps == pytest.approx(reserve) and layered.n_sources == 3
    assert layered.base_kbps == pytest.approx(0.95 * 20 - 4.32 - reserve)
    assert "base layer 11.9 (256 px, as CRF 57)" in layered.describe()
    # the frames and the sound first: with sound less is left for the base layer
    assert 0 < plan_budget(30, 15, POINTS, audio=True, base=True).base_kbps < \
        plan_budget(30, 15, POINTS, audio=False, base=True).base_kbps
    # too little left: no base layer, the plan as without it
    for kbps, audio in ((12, False), (20, True)):
        thin = plan_budget(kbps, 15, POINTS, audio=audio, base=True)
        assert thin == plan_budget(kbps, 15, POINTS, audio=audio)
    assert 0.95 * 12 - 4.32 - reserve < BASE_MIN_KBPS
    # the CRF that gives a rate on the val clips, held at the fusion's range
    assert [base_crf(k) for k in (3, 6, 13, 20.5, 40)] == [63, 63, 56, 48, 48]
    assert 56 < base_crf(9) < 63


def test_below_opus_the_sound_is_codec2_and_then_the_frame_rate_halves():
    # 8 kbps: frames 4.32 at 15 fps leave 7.35 - 4.32 = 3.03; Opus's 7.07 does not fit,
    # Codec 2 2400 (2.93) is over half of it: 1300
    plan = plan_budget(8, 15, POINTS, audio=True)
    assert (plan.fps, plan.audio_codec, plan.audio_kbps) == (15, "codec2", 1.3)
    assert plan.audio_all_kbps == pytest.approx(codec2_all_kbps(1300))
    assert "Codec 2 1300" in plan.describe()
    # 12 kbps: half of 11.15 - 4.32 is 3.4, room for 2400; 13 kbps: Opus at its floor
    assert plan_budget(12, 15, POINTS, audio=True).sound_name() == "Codec 2 2400"
    assert plan_budget(13, 15, POINTS, audio=True).sound_name() == "Opus 6"
    # 6 kbps: 4.32 + 1.93 > 5.45 at 15 fps, so 7.5 fps, (232 x 1.18 + 56) x 7.5 = 2.47
    # kbps with an intra frame every 6 s, and Codec 2 1300
    six = plan_budget(6, 15, POINTS, audio=True)
    assert six.fps == 7.5 and six.frames_kbps == pytest.approx(2.47, abs=0.01)
    assert six.intra_s == 6.0 and plan_budget(20, 15, POINTS, audio=True).intra_s is None
    assert six.sound_name() == "Codec 2 1300" and "at 7.5 fps" in six.describe()
    assert six.sources_kbps == pytest.approx(0.95 * 6 - six.frames_kbps - six.audio_all_kbps)
    # in 40-ms packets (lip sync), 2.6 kbps; at 5 kbps 2.47 + 2.0 <= 4.5: 80-ms ones,
    # at 4.9 kbps 2.47 + 2.0 > 4.4: 120-ms ones
    assert six.audio_packet_ms == 40 and six.audio_all_kbps == pytest.approx(2.6)
    five = plan_budget(5, 15, POINTS, audio=True)
    assert five.audio_packet_ms == 80 and five.audio_all_kbps == pytest.approx(2.0)
    assert five.sound_name() == "Codec 2 1300 in 80-ms packets"
    thin = plan_budget(4.9, 15, POINTS, audio=True)
    assert thin.audio_packet_ms == 120 and thin.audio_all_kbps == pytest.approx(1.8)
    assert plan_budget(20, 15, POINTS, audio=True).audio_packet_ms == 60  # Opus's
    # without sound the frame rate holds down to 4.9 kbps, then halves: 3 kbps works
    assert plan_budget(5, 15, POINTS, audio=False).fps == 15
    assert plan_budget(4, 15, POINTS, audio=False).fps == 7.5
    assert plan_budget(3, 15, POINTS, audio=False).fps == 7.5


def test_a_file_plans_its_sources_over_its_length():
    plan = plan_budget(8, 15, POINTS, audio=False)  # 3.28 kbps for the sources
    assert plan.sources_for(None) == plan.n_sources == 3  # a call: what 30 s deliver
    # a one-minute file: what 48 s (80 %) deliver, 3.28 kbps x 48 s / 3.5 KB = 5.6
    assert plan.sources_for(60.0) == int(plan.sources_kbps * 1000 / 8 * 48 / 3500) == 5
    assert plan.sources_for(8.0) == 3  # a short clip: never fewer than the default
    assert plan.sources_for(3600.0) == 8  # an hour: what a receiver takes
    assert plan_budget(8, 15, POINTS, audio=False, max_sources=1).sources_for(60.0) == 1


def test_a_budget_too_small_says_the_smallest_that_works():
    # the cheapest frames at half the rate: 2.47 kbps; Codec 2 at 1300 bit/s in its long
    # packets, 21 bytes every 120 ms in a 6-byte short audio chunk: 1.8 kbps; (2.47 + 1.8
    # + 0.25) / 0.95 = 4.76 (in 40-ms packets, 7 bytes + 6: 2.6 kbps)
    assert codec2_all_kbps(1300, packet_s=0.12) == pytest.approx(27 * 8 / 0.12 / 1000)
    assert codec2_all_kbps(1300) == pytest.approx(13 * 8 / 0.04 / 1000)
    with pytest.raises(BudgetError, match=r"7\.5 fps, dead zone 32\).*needs at least 4\.8 "
                                          r"kbps; without sound \(--no-audio\) 2\.9 kbps"):
        plan_budget(4, 15, POINTS, audio=True)
    costly = [point(16, 400)]  # (400 x 1.18 + 56) x 7.5 = 3.96 kbps at half the rate
    with pytest.raises(BudgetError, match=r"needs at least 4\.5 kbps$"):
        plan_budget(3, 15, costly, audio=False)
    for bad in (2.9, 31, float("nan"), "8"):
        with pytest.raises(InputError, match="3..30"):
            plan_budget(bad, 15, POINTS, audio=False)
    unfitted = Prior.untrained(TABLE)
    with pytest.raises(InputError, match="no held-out rate"):
        plan_budget(10, 15, [(16, unfitted)], audio=False)


def budget_stream(rate_kbps: float, frames: int = 450, sources: int = 2
                  ) -> tuple[bytes, list[int], int]:
    """30 s of frames with ``sources`` 6 KB sources paced within an all-in budget; also
    each frame's bytes (what was written between two frames) and the writer's part size."""
    prior = Prior.untrained(TABLE)
    header = Header(TABLE, prior.id, Fraction(15), intra_period=30, n_sources=sources,
                    model_id="test-model", model_hash=b"h" * 16)
    buf = io.BytesIO()
    w = FcsWriter(buf, header, prior, all_in_rate=rate_kbps * 1000 / 8 / 15)
    rng = np.random.default_rng(1)
    walk = [random_walk(TABLE, 1, seed=2)[0]] * frames  # still: a steady frame rate
    for slot in range(sources):
        w.add_source(slot, "webp", 256, 256, bytes(rng.integers(0, 256, 6000, np.uint8)),
                     walk[0], paced=True)
    per_frame = []
    for f in walk:
        before = w.bytes_written
        w.add_frame(f)
        per_frame.append(w.bytes_written - before)
    w.close()
    return buf.getvalue(), per_frame, w.part_bytes


def test_the_writer_keeps_an_all_in_budget_and_the_sources_take_the_rest():
    rate = 12.0  # kbps; the frames alone take 6 (a still face, an untrained prior)
    data, per_frame, part = budget_stream(rate)
    assert part == 750  # half a second of 12 kbps
    parts = part_chunks(data)
    assert len(parts) == 18  # 2 x (6 KB image, its values, the chunk head) in 750-B parts
    # over any 10-s window (150 frames), all-in within the budget plus one part
    limit = rate * 1000 / 8 * 10 + part + 16
    sums = np.convolve(per_frame, np.ones(150, dtype=int), "valid")
    assert sums.max() <= limit
    # and the sources did use it: the first 10 s are near the budget, both sources are out
    # within the 30 s, and the last 10 s (frames alone) are far below
    assert sums[0] >= 0.9 * rate * 1000 / 8 * 10
    assert sums[-1] <= 0.7 * rate * 1000 / 8 * 10
    r = FcsReader(data, prior=Prior.untrained(TABLE))
    events = list(r)
    assert len([e for e in events if isinstance(e, DecodedFrame)]) == 450
    assert r.sources_seen == {0, 1}


def part_chunks(data: bytes) -> list[Chunk]:
    start = header_length(data[:8], "test")
    parser = ChunkParser(start)
    parser.feed(data[start:])
    parser.close()
    return [c for c in parser.chunks() if isinstance(c, Chunk) and c.kind == SOURCE_PART]


def test_a_thin_budget_sends_small_parts():
    """At 8 kbps a 1-KB part would be a second of the budget: parts hold half a second."""
    data, per_frame, part = budget_stream(8.0, frames=300)  # frames take 6 kbps
    assert part == 8000 // 8 // 2
    assert len(part_chunks(data)) >= 5  # some went out
    steady = np.convolve(per_frame, np.ones(15, dtype=int), "valid")  # 1-s windows
    assert steady.max() <= 8000 / 8 + part + 400  # one part at a time (an intra frame)


def test_a_budgeted_file_drops_the_sources_not_started_by_its_end():
    """What the budget did not carry by the end is not sent at the end (the source under
    way is finished: a part of a source is no source); the stream reads whole."""
    data, per_frame, part = budget_stream(12.0, frames=150, sources=4)  # 24 KB in 10 s
    r = FcsReader(data, prior=Prior.untrained(TABLE))
    assert len([e for e in r if isinstance(e, DecodedFrame)]) == 150
    sent = len(r.sources_seen)
    assert 1 <= sent < 4
    # after the last frame: the header, the rest of the one source under way (at most a
    # whole one with its parts' framing) and the end chunk, not the sources never started
    assert len(data) - sum(per_frame) <= 6000 + 200 + 16 * (6000 // part + 1)


def test_all_in_rate_is_checked_and_exclusive():
    prior = Prior.untrained(TABLE)
    header = Header(TABLE, prior.id, Fraction(15), intra_period=30, n_sources=2,
                    model_id="m", model_hash=b"h" * 16)
    for bad in (-1.0, float("inf")):
        with pytest.raises(ValueError, match="all_in_rate"):
            FcsWriter(io.BytesIO(), header, prior, all_in_rate=bad)
    with pytest.raises(ValueError, match="not both"):
        FcsWriter(io.BytesIO(), header, prior, all_in_rate=60.0, source_rate=20.0)


def test_the_command_refuses_a_budget_it_cannot_keep_in_one_line(tmp_path):
    video = make_example_video(tmp_path / "in.mp4", seconds=1.0)
    run = [sys.executable, "-m", "facecodec", "encode"]
    r = subprocess.run([*run, str(video), str(tmp_path / "a.fcs"), "--kbps", "4"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith(
        "facecodec: error: a budget of 4 kbps cannot carry")
    assert "--no-audio" in r.stderr and not (tmp_path / "a.fcs").exists()
    r = subprocess.run([*run, str(video), str(tmp_path / "b.fcs"), "--kbps", "8",
                        "--deadband", "4"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "not both" in r.stderr


def test_the_report_holds_a_budgeted_stream_against_its_budget(tmp_path, monkeypatch):
    """The header's info carries the budget; ``bitrate --report`` compares the highest
    10-s window after the first with it."""
    from facecodec.bitstream.report import analyse, to_markdown

    prior = Prior.untrained(TABLE)
    prior.save(tmp_path / "priors" / "p.json")
    monkeypatch.setenv("FACECODEC_PRIORS", str(tmp_path / "priors"))  # where analyse finds it
    header = Header(TABLE, prior.id, Fraction(15), intra_period=30, n_sources=1,
                    model_id="m", model_hash=b"h" * 16, info={"budget_kbps": 12.0})
    path = tmp_path / "b.fcs"
    with open(path, "wb") as f:
        w = FcsWriter(f, header, prior, all_in_rate=12.0 * 1000 / 8 / 15)
        for v in [random_walk(TABLE, 1, seed=2)[0]] * 450:
            w.add_frame(v)
        w.close()
    summary = analyse(path).summary()
    assert summary["budget_kbps"] == 12.0
    top = max(x["all_in_kbps"] for x in summary["windows"][1:])
    assert f"Budget 12 kbps (the sender's `--kbps`): the highest full window after the " \
           f"first is {top:.2f} kbps ({top / 12:.0%} of it" in to_markdown([summary])


def test_a_budgeted_encoder_gives_a_file_the_sources_its_length_delivers():
    from facecodec.codec import Encoder

    enc = Encoder(kbps=8, audio=False)
    assert enc.clip_sources(60 * 15) == enc.budget.sources_for(60.0) > enc.n_sources
    assert enc.clip_sources(8 * 15) == enc.n_sources == 3
    assert Encoder(kbps=8, audio=False, n_sources=3).clip_sources(60 * 15) == 3  # as told
    assert Encoder(n_sources=2).clip_sources(60 * 15) == 2  # no budget
