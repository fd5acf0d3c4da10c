"""A lost frame noticed from the sound sent after it (facecodec/call/witness.py)."""

import pytest

from facecodec.audio import CODEC2_DELAY, RATE
from facecodec.call.witness import (
    CODEC2_STAMP_S,
    MARGIN_SLACK_S,
    MAX_MARGIN_S,
    MIN_MARGIN_S,
    SoundWitness,
    sound_seconds,
)

FPS = 7.5


def test_a_sound_packet_sent_after_a_missing_frame_reports_it_once():
    w = SoundWitness(FPS)
    assert w.sound(0, 0.08) is None  # no frame yet: the first ones come late, together
    # frames 0..9 (10 is due at 1.333 s), late behind that sound packet: start-up, which
    # the receiver does not learn the margin from
    w.frames(range(10), learn=False)
    # a packet ending at 1.333 + the margin was surely sent after frame 10: 10 is lost
    before = round((10 / FPS + MIN_MARGIN_S - 0.08) * 48000) - 48
    assert w.sound(before, 0.08) is None  # ending 1 ms short of that: it proves nothing
    assert w.sound(before + 96, 0.08) == (10, 9)
    assert w.sound(before + 3840, 0.08) is None  # the same loss: asked for once
    w.frames([11, 12])
    assert w.sound(round(12.5 / FPS * 48000), 0.08) is None  # 13 not surely sent yet


def at(frame: float) -> int:
    """The start of an 80-ms sound packet sent well after ``frame``'s time."""
    return round(frame / FPS * 48000)


def test_nothing_lost_and_a_lost_reference():
    w = SoundWitness(FPS)
    w.frames(range(20))
    assert w.sound(at(19.5), 0.08) is None  # 0..19 arrived, 20 not surely sent yet
    w.frames([20, 21])
    # 22 and 23 lost: the first one is reported with the frame before it
    assert w.sound(at(24), 0.08) == (22, 21)
    # 25 lost as well, after 23 and 24: no request of its own (its reference is gone:
    # the recovery frame asked for 22 serves, or the decoder's own request)
    assert w.sound(at(25), 0.08) is None
    w.frames([26, 27])
    assert w.sound(at(27.5), 0.08) is None


def test_how_long_a_sound_packet_lasts():
    # from its start to its last sample: 2 frames of 7 bytes, stamped 20 ms early
    codec2 = {"audio": {"codec": "codec2", "mode": 1300}}
    assert CODEC2_STAMP_S == CODEC2_DELAY / RATE
    assert sound_seconds(codec2, 14) == pytest.approx(0.1)
    assert sound_seconds({"audio": {"codec": "codec2", "mode": 2400}}, 24) == pytest.approx(0.1)
    assert sound_seconds({"audio": {"codec": "opus"}}, 40) == pytest.approx(0.02)
    assert sound_seconds({}, 14) == pytest.approx(0.02)


def test_the_margin_learns_how_late_frames_leave():
    w = SoundWitness(FPS)
    assert w.margin_s == MIN_MARGIN_S
    w.frames(range(10))
    # a sound packet sent 50 ms after frame 10's time, then frame 10: it left that late
    w.sound(round((10 / FPS + 0.05 - 0.04) * 48000), 0.04)
    w.frames([10])
    assert w.margin_s == pytest.approx(0.05 + MARGIN_SLACK_S)
    # so a packet sent 50 ms after frame 11's time no longer proves 11 lost, 70 ms does
    assert w.sound(round((11 / FPS + 0.05 - 0.04) * 48000), 0.04) is None
    assert w.sound(round((11 / FPS + 0.07 - 0.04) * 48000), 0.04) == (11, 10)
    # packed frames leave late by design: they teach nothing; a stall is capped
    w.sound(round((12 / FPS + 0.2 - 0.04) * 48000), 0.04)
    w.frames([11, 12], learn=False)
    assert w.margin_s == pytest.approx(0.05 + MARGIN_SLACK_S)
    w.sound(round((13 / FPS + 0.5 - 0.04) * 48000), 0.04)
    w.frames([13])
    assert w.margin_s == MAX_MARGIN_S
