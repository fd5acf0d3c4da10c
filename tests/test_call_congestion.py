"""The receiver's congestion verdicts (facecodec/call/congestion.py) and their wire form,
on made-up arrival times: a link whose queue grows, then drains."""

import io
from fractions import Fraction

import numpy as np
import pytest
from bitstream_helpers import random_walk

from facecodec.bitstream.container import FcsWriter, Header
from facecodec.bitstream.prior import Prior
from facecodec.bitstream.streams import TABLES
from facecodec.call import wire
from facecodec.call.congestion import CongestionMonitor

FPS = 15.0
TABLE = TABLES["sup_unsup_expr"]


def feed(monitor, frames, delay, start=0):
    """Frames ``start..`` arriving ``delay(i)`` s after their stream time; the verdicts."""
    out = []
    for i in range(start, start + frames):
        v = monitor.arrived(i, i / FPS + delay(i), 60)
        if v is not None:
            out.append((i, v.frames))
    return out


def test_a_steady_link_with_jitter_is_left_alone():
    m = CongestionMonitor(FPS)
    jitter = [0.0, 0.1, 0.03, 0.07, 0.09, 0.01, 0.05]  # 100 ms of jitter, no queue
    assert feed(m, 900, lambda i: 0.2 + jitter[i % len(jitter)]) == []
    assert m.frames == 1
    assert m.kbps() == pytest.approx(60 * 8 * FPS / 1000, rel=0.02)  # what arrives


def test_a_growing_queue_asks_for_packing_then_calm_gives_it_back():
    m = CongestionMonitor(FPS, max_frames=3)
    assert feed(m, 150, lambda i: 0.1) == []  # 10 s of a clear link: the base
    # then the queue grows by 20 ms a frame: 300 ms after 15 frames
    def growing(i):
        return 0.1 + 0.02 * (i - 150)

    got = feed(m, 60, growing, start=150)
    first = got[0]
    assert first[1] == 2 and 150 + 13 <= first[0] <= 150 + 20  # queue past 250 ms
    assert [k for _, k in got] == [2, 3]  # one step per settle_s, up to 3
    arrival = [i / FPS + growing(i) for i, _ in got]
    assert 2.0 <= arrival[1] - arrival[0] < 2.2
    # the queue drains: one frame fewer after 5 calm seconds, then another 5 s later
    calm = feed(m, 300, lambda i: 0.1, start=210)
    assert [k for _, k in calm] == [2, 1]
    assert calm[1][0] - calm[0][0] >= 5 * FPS


def test_a_full_queue_from_the_start_shows_as_loss():
    # capped from the first second: the transit never drops (no base to see a queue
    # against), but the full queue drops a third of the frames
    m = CongestionMonitor(FPS)
    kept = [i for i in range(150) if i % 3 != 1]
    verdicts = [(i, v.frames) for i in kept
                if (v := m.arrived(i, i / FPS + 0.6, 60)) is not None]
    assert verdicts and verdicts[0][1] == 2 and verdicts[0][0] < 2 * 30
    assert m.missing() == pytest.approx(1 / 3, abs=0.04)
    # random loss of 5 % does not: no 30-frame window loses a quarter, at 15 frames/s
    # nor at the 7.5 of a 6-kbps call with sound (a 2-s window of 15 frames did, in one
    # call of three)
    for fps in (FPS, FPS / 2):
        for seed in range(5):
            calm = CongestionMonitor(fps)
            rng = np.random.default_rng(seed)
            assert all(calm.arrived(i, i / fps + 0.2, 60) is None
                       for i in range(900) if rng.random() >= 0.05)


def test_a_packed_call_on_a_lossy_uncongested_link_gets_its_frames_back():
    fps = FPS / 2
    m = CongestionMonitor(fps)
    m.frames = 3  # packed by an earlier congested spell
    rng = np.random.default_rng(1)
    verdicts = [(i, v.frames) for i in range(300) if rng.random() >= 0.05
                and (v := m.arrived(i, i / fps + 0.2, 60)) is not None]
    assert [k for _, k in verdicts] == [2, 1]
    assert verdicts[-1][0] < 30 + 2 * 8 * fps  # within ~20 s of the call


def test_pack_requests_on_the_wire_are_bounded():
    assert wire.parse_feedback(wire.pack_request(3)) == ("pack", 3)
    assert wire.parse_feedback(b"P\x00") is None  # a peer's 0 or 200: ignored
    assert wire.parse_feedback(b"P\xc8") is None
    with pytest.raises(ValueError):
        wire.pack_request(wire.MAX_PACKING + 1)
    with pytest.raises(ValueError):
        CongestionMonitor(FPS, low_s=0.3, high_s=0.2)


def test_packet_frames_reads_the_frame_numbers_of_a_message():
    prior = Prior.untrained(TABLE)
    header = Header(TABLE, prior.id, Fraction(15), intra_period=30, n_sources=1,
                    model_id="test-model", model_hash=b"h" * 16)
    sink = io.BytesIO()
    w = FcsWriter(sink, header, prior)
    walk = random_walk(TABLE, 5, seed=3)
    w.add_frame(walk[0])
    start = sink.tell()
    for values in walk[1:4]:
        w.add_frame(values)
    assert wire.packet_frames(sink.getvalue()[start:]) == [1, 2, 3]
    assert wire.packet_frames(b"") == []


def test_a_recovery_request_goes_out_twice_then_every_repeat_interval():
    from facecodec.call.peer import REQUEST_REPEAT_S, RecoveryRequests, is_copy

    r = RecoveryRequests()
    frame = 1 / FPS
    # held frames every 67 ms naming frame 9: sent on the first two, then once per interval
    sent = [i for i in range(12) if r.due(9, i * frame)]
    assert sent[:2] == [0, 1]
    gaps = np.diff([i * frame for i in sent[1:]])
    assert len(sent) > 2 and (gaps >= REQUEST_REPEAT_S - 1e-9).all()
    assert (gaps < REQUEST_REPEAT_S + frame).all()
    # a later loss (a new last decoded frame) is a new request: two copies again
    assert r.due(30, 1.0) and r.due(30, 1.0 + frame) and not r.due(30, 1.0 + 2 * frame)
    assert r.due(None, 1.2)  # nothing decoded: an intra request is new too
    # the sender acts on the first and ignores its copy, not a repeat 0.2 s later
    assert is_copy((9, 5.0), 9, 5.0 + frame)
    assert not is_copy((9, 5.0), 9, 5.0 + REQUEST_REPEAT_S)
    assert not is_copy((9, 5.0), 10, 5.0 + frame)


def test_a_frame_is_drawn_with_newer_ones_waiting_while_there_is_time():
    from facecodec.call.peer import backlog_allowed
    # 7.5 frames/s, a 25-ms drawing: two waiting frames still leave time to draw it
    assert backlog_allowed(1 / 7.5, 0.025) == 2
    assert backlog_allowed(1 / 15, 0.027) == 1
    # a slow receiver at 15 frames/s catches up at once; before any drawing, too
    assert backlog_allowed(1 / 15, 0.055) == 0
    assert backlog_allowed(1 / 7.5, None) == 0
    assert backlog_allowed(1.0, 0.001) == 2  # never more than MAX_BACKLOG
