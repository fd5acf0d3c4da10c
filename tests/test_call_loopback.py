"""A short loopback call over WebRTC with loss (facecodec/call): both peers in this
process, every datagram through the emulated link on 127.0.0.1, the example video played in
real time. Checks that the call ends and that its report adds up."""

import asyncio
import json

import pytest

pytest.importorskip("aiortc")

from facecodec.call.link import LinkProfile  # noqa: E402
from facecodec.call.peer import CallOptions  # noqa: E402
from facecodec.call.run import loopback_call  # noqa: E402
from facecodec.call.summary import text_summary  # noqa: E402
from facecodec.examples import make_example_video  # noqa: E402


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("call")
    video = make_example_video(tmp / "in.mp4", seconds=3.0, beeps=[0.5, 1.5, 2.5])
    opts = CallOptions(kbps=None, audio=True, record=tmp / "call.mp4")
    link = LinkProfile(loss=0.1, delay_ms=10, jitter_ms=30)
    rep = asyncio.run(asyncio.wait_for(
        loopback_call({"video": str(video)}, opts, link, seed=2, timeout=90), 180))
    rep["_record"] = str(tmp / "call.mp4")
    return rep


def test_every_frame_accounted_for(report):
    f = report["frames"]
    assert f["accounted"], f
    # 3 s at 15 fps: 45 slots, the last ones missing if the sender was too late for them
    # (a slot it missed within the call repeats the last picture: a stream frame)
    assert f["sent"] == report["end_chunk_frames"]
    assert 30 <= f["sent"] <= 45
    cam = report["camera_frames"]
    assert cam["pushed"] <= f["sent"] and cam["pushed"] + cam["dropped_late"] == 45
    assert f["drawn"] + f["concealed"] + f["late"] + f["not_shown"] + f["lost_at_end"] \
        == f["sent"]
    assert f["drawn"] >= 1 and report["first_face_s"] is not None
    assert report["sources_s"] and report["sources_s"][0][1] <= report["first_face_s"]


def test_the_link_acted_on_the_datagrams(report):
    fwd = report["link"]["a_to_b"]
    assert fwd["lost"] > 0  # seed 2: some of the ~100 datagrams each way
    assert fwd["delivered"] + fwd["lost"] + fwd["overflow"] == fwd["datagrams"]
    assert 10 <= fwd["delay_ms_p50"] <= 40 + 1e-6
    # what the sender put on the data channels reached the wire, with DTLS/SCTP around it
    assert fwd["bytes"] > report["bits_sent"]["bytes"]


def test_report_fields_consistent(report):
    d = report["delay"]["all"]
    assert d["frames"] == report["frames"]["drawn"]
    if d["frames"]:
        assert d["capture_to_display_ms"]["p50"] >= d["network_ms"]["p50"] >= 10
        assert d["added_ms"]["p95"] <= d["capture_to_display_ms"]["p95"]
    fz = report["freezes"]
    assert fz["longest_s"] >= 0 and fz["longest_run_frames"] <= report["frames"]["sent"]
    # the sound went in the stream and was scheduled against the pictures
    av = report["av"]
    assert av is not None and av["audio_packets"] > 0
    # every loss the decoder concealed made the receiver ask (feedback on), and the
    # sender acted on what reached it
    fb = report["feedback"]
    if report["frames"]["concealed"]:
        assert sum(fb["sent"].values()) >= 1
    assert sum(fb["acted_on"].values()) <= sum(fb["sent"].values())
    json.dumps(report)  # the JSON report
    assert "every frame accounted for" in text_summary(report)


def test_recording_has_picture_and_sound(report):
    import av
    with av.open(report["_record"]) as c:
        kinds = sorted(s.type for s in c.streams)
        assert kinds == ["audio", "video"]
        frames = sum(1 for _ in c.decode(video=0))
    f = report["frames"]
    assert frames == f["sent"] - f["not_shown"] - f["lost_at_end"] - (
        report["sources_s"] and 0)


def test_a_call_whose_link_dies_ends_by_itself(tmp_path):
    """The link carries the handshake and about a second of the call, then nothing (a
    sender gone without its end chunk): the receiver ends the call ``idle_s`` later, says
    why, and every frame the sender sent is still accounted for."""
    video = make_example_video(tmp_path / "in.mp4", seconds=3.0)
    opts = CallOptions(kbps=None, idle_s=2.0)
    link = LinkProfile(cut_after=40)  # 71 datagrams make the whole call
    rep = asyncio.run(asyncio.wait_for(
        loopback_call({"video": str(video)}, opts, link, backward=LinkProfile(), seed=1),
        180))
    assert rep["ended_by"] == "nothing from the sender for 2 s"
    f = rep["frames"]
    assert f["accounted"], f
    assert rep["end_chunk_frames"] is None and f["lost_at_end"] > 0
    assert rep["link"]["a_to_b"]["lost"] > 0


def test_a_thin_budget_with_sound_calls_at_half_the_frame_rate(tmp_path):
    """6 kbps with sound: the call's options take the plan's 7.5 fps (the CLI says so), the
    sound goes as Codec 2, and the receiver records at the stream's rate with the sound."""
    import av

    from facecodec.cli.call_cmds import _options

    opts = _options(6.0, True, "none", 15.0, None, None, 1, record=tmp_path / "call.mp4")
    assert opts.fps == 7.5
    video = make_example_video(tmp_path / "in.mp4", seconds=3.0, beeps=[1.0, 2.0])
    rep = asyncio.run(asyncio.wait_for(
        loopback_call({"video": str(video)}, opts, LinkProfile(), seed=1, timeout=90), 180))
    f = rep["frames"]
    assert f["accounted"], f
    assert 15 <= f["sent"] <= 23  # 3 s at 7.5 fps
    with av.open(str(tmp_path / "call.mp4")) as c:
        assert c.streams.video[0].average_rate == 7.5 and c.streams.audio
        assert c.streams.video[0].frames == f["sent"] - f["not_shown"] - f["lost_at_end"]


def test_a_call_with_a_base_layer(tmp_path):
    """--kbps 20 --base: the budget plans a base layer, its units go with the frames and
    the receiver fuses them."""
    from facecodec.cli.call_cmds import _options

    opts = _options(20.0, False, "none", 15.0, None, None, 1, base=True)
    assert opts.base
    video = make_example_video(tmp_path / "in.mp4", seconds=2.0)
    rep = asyncio.run(asyncio.wait_for(
        loopback_call({"video": str(video)}, opts, LinkProfile(), seed=1, timeout=90), 180))
    assert rep["frames"]["accounted"], rep["frames"]
    assert rep["base_fused"] > 0.5 * rep["frames"]["drawn"]
