"""The call report's arithmetic (facecodec/call/report.py) on hand-made logs."""

import pytest

from facecodec.call.report import (
    FrameEvent,
    ReceiverLog,
    SenderLog,
    account,
    av_offset,
    bitrate,
    freezes,
    quantiles,
    summarize,
)

FPS = 10.0


def sender(n=10, t0=100.0, audio=False):
    return SenderLog(fps=FPS, t0=t0, capture=[t0 + k / FPS for k in range(n)], audio=audio)


def ev(i, shown, kind="drawn", net=0.02):
    return FrameEvent(i, shown, kind, shown - 0.01, net)


def test_quantiles_nearest_rank():
    assert quantiles([]) == {"p50": None, "p95": None}
    assert quantiles([3.0]) == {"p50": 3.0, "p95": 3.0}
    xs = [float(i) for i in range(1, 101)]
    assert quantiles(xs) == {"p50": 50.0, "p95": 95.0}


def test_account_every_frame():
    frames = [ev(0, 1), ev(1, 2, "concealed"), ev(2, 3, "late"), ev(4, 4)]
    a = account(7, frames, not_shown=1)  # 3 never given out; 5, 6 after the last
    assert a == {"sent": 7, "drawn": 2, "concealed": 1, "late": 1, "not_shown": 1,
                 "lost_at_end": 2, "decoder_not_shown": 1, "duplicates": 0,
                 "out_of_range": 0, "accounted": True}
    assert not account(7, frames, not_shown=0)["accounted"]  # the decoder disagrees
    assert not account(7, [*frames, ev(4, 5)], 1)["accounted"]  # a frame twice
    assert not account(3, frames, 1)["accounted"]  # a frame the sender never made


def test_freezes_on_screen_and_in_frames():
    frames = [ev(0, 0.0), ev(1, 0.1), ev(2, 0.2, "concealed"), ev(3, 0.3, "late"),
              ev(4, 0.9), ev(5, 1.0)]
    f = freezes(frames, FPS)
    assert f["longest_s"] == pytest.approx(0.8)  # 0.1 -> 0.9 without a new picture
    assert f["over_0_5_s"] == 1
    assert f["longest_run_frames"] == 2 and f["longest_run_s"] == pytest.approx(0.2)
    assert f["time_frozen_s"] == pytest.approx(0.7)
    assert freezes(frames, FPS, end=2.0)["longest_s"] == pytest.approx(1.0)
    # the first picture, then frames captured before it decoded late as the receiver
    # catches up: no run once they are left out (``since``: the first frame after it)
    start = [ev(0, 2.0), *(ev(k, 2.0 + 0.01 * k, "late") for k in range(1, 5)),
             ev(5, 2.1), ev(6, 2.2, "concealed"), ev(7, 2.3)]
    assert freezes(start, FPS)["longest_run_frames"] == 4
    assert freezes(start, FPS, since=5)["longest_run_frames"] == 1


def test_delays_subtract_the_link():
    s = sender(4)
    frames = [ev(k, s.capture[k] + 0.15 + 0.01 * k, net=0.05) for k in range(4)]
    r = summarize(s, ReceiverLog(frames=frames))
    d = r["delay"]["all"]
    assert d["frames"] == 4
    assert d["capture_to_display_ms"] == {"p50": 160.0, "p95": 180.0}
    assert d["added_ms"] == {"p50": 110.0, "p95": 130.0}
    assert d["network_ms"]["p50"] == 50.0
    # in the call proper: frames captured once the first face was shown (at 100.15)
    assert r["delay"]["in_call"]["frames"] == 2
    assert r["first_face_s"] == pytest.approx(0.15)


def test_av_offset_follows_the_video_delay():
    s = sender(40, audio=True)
    # the video's delay steps from 200 to 300 ms at frame 20; the sound's playout delay
    # follows the last 2 s of pictures, re-set every second
    frames = [ev(k, s.capture[k] + (0.2 if k < 20 else 0.3)) for k in range(40)]
    audio = [(k * 2880, s.t0 + k * 0.06 + 0.05) for k in range(60)]  # 60-ms packets
    r = ReceiverLog(frames=frames, audio=audio)
    a = av_offset(s, r)
    assert a["frames"] == 40
    assert a["abs_offset_ms"]["p50"] == pytest.approx(0.0, abs=1e-6)
    assert a["abs_offset_ms_max"] == pytest.approx(100.0)  # until the playout follows
    assert a["audio_packets"] == 60 and a["audio_packets_late"] == 0
    assert av_offset(sender(4), r) is None  # no sound


def test_av_offset_waits_for_late_sound():
    """Sound that arrives after the pictures' delay: the playout waits for it (no gaps),
    and the pictures run ahead of the sound by the difference."""
    s = sender(40, audio=True)
    frames = [ev(k, s.capture[k] + 0.2) for k in range(40)]
    # 60-ms packets arriving 300 ms after their first sample, every fifth 400 ms
    audio = [(k * 2880, s.t0 + k * 0.06 + (0.4 if k % 5 == 4 else 0.3)) for k in range(60)]
    a = av_offset(s, ReceiverLog(frames=frames, audio=audio))
    assert a["playout_delay_ms"]["p50"] == 400.0  # the sound's 95th percentile
    assert a["offset_ms"]["p50"] == pytest.approx(-200.0)  # the picture 200 ms early
    assert a["audio_delay_ms"] == {"p50": 300.0, "p95": 400.0}
    # following the pictures (200 ms) until the first late packets moved it: 2 gaps
    assert a["audio_packets_late"] == 2
    # a player that holds the pictures to 60 ms ahead of the sound: 340 ms, 20 of them
    # the link's
    held = a["held_to_sync"]
    assert held["abs_offset_ms"]["p50"] == pytest.approx(60.0)
    assert held["added_ms"]["p50"] == pytest.approx(320.0)
    assert 30 <= held["frames_held"] <= 40


def test_av_offset_through_a_freeze():
    """No picture for 5 s (a lost link without feedback): the playout keeps the last
    pictures' delay and follows the sound."""
    s = sender(100, audio=True)
    frames = [ev(k, s.capture[k] + 0.2) for k in range(100) if not 20 <= k < 70]
    audio = [(k * 2880, s.t0 + k * 0.06 + 0.1) for k in range(160)]
    a = av_offset(s, ReceiverLog(frames=frames, audio=audio))
    assert a["frames"] == 50 and a["audio_packets_late"] == 0
    assert a["offset_ms"]["p50"] == pytest.approx(0.0, abs=1e-6)


def test_bitrate_windows_against_budget():
    # 100 bytes every 0.1 s for 35 s: 8 kbps; windows [10, 20) and [20, 30)
    events = [(i * 0.1, 100, "fcs") for i in range(350)]
    b = bitrate(events, 0.0, 35.0, budget=10.0)
    assert b["kbps"] == pytest.approx(8.0)
    assert b["windows_kbps"] == pytest.approx([8.0, 8.0])
    assert b["of_budget"] == pytest.approx(0.8)
    assert b["highest_window_of_budget"] == pytest.approx(0.8)
    assert b["kbps_by_channel"] == {"fcs": pytest.approx(8.0)}


def test_wire_rates_count_the_media_span_only():
    """The relay's datagrams before the sender's first frame (ICE, DTLS) are not the
    call's rate; without the relay's log, every byte counts."""
    s = sender(4)
    s.sent = [(100.0, 100, "fcs"), (110.0, 100, "fcs")]  # a 10-s span
    link = {"a_to_b": {"bytes": 6000, "datagrams": 30}}
    offered = {"a_to_b": [(99.0, 5000), *((100.0 + k, 100) for k in range(10))]}
    r = summarize(s, ReceiverLog(frames=[ev(0, 100.2)]), link=link, offered=offered)
    assert r["bits_wire"]["a_to_b"]["kbps_udp"] == pytest.approx(1000 * 8 / 10 / 1000)
    assert r["bits_wire"]["a_to_b"]["datagrams_per_s"] == pytest.approx(1.0)
    r = summarize(s, ReceiverLog(frames=[ev(0, 100.2)]), link=link)
    assert r["bits_wire"]["a_to_b"]["kbps_udp"] == pytest.approx(6000 * 8 / 10 / 1000)
