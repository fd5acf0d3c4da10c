"""The emulated link of a loopback call (facecodec/call/link.py) and the wire's chunk
routing (facecodec/call/wire.py), on synthetic datagrams and streams: no network, no model."""

import asyncio
import socket
import struct
import sys

import numpy as np
import pytest

from facecodec.bitstream.chunks import (
    AUDIO,
    AUDIO_ORIGIN,
    AUDIO_SHORT,
    END,
    INTER,
    SOURCE,
    chunk,
    varint,
)
from facecodec.bitstream.header import MAGIC
from facecodec.call import wire
from facecodec.call.link import UDP_IP_OVERHEAD, LinkModel, LinkProfile, UdpRelay


def run(profile, n=2000, gap=0.01, size=100, seed=3):
    m = LinkModel(profile, seed)
    return m, [m.send(i * gap, size) for i in range(n)]


def test_loss_rate_and_seeded_repeat():
    m, out = run(LinkProfile(loss=0.05))
    lost = sum(a is None for a in out)
    assert m.stats.lost == lost
    assert 60 <= lost <= 140  # 5 % of 2000, within ~4 sigma
    _, again = run(LinkProfile(loss=0.05))
    assert again == out  # the same seed, the same fate for every datagram
    _, other = run(LinkProfile(loss=0.05), seed=4)
    assert other != out


def test_jitter_bounds_and_keeps_order():
    p = LinkProfile(delay_ms=20, jitter_ms=100)
    m, out = run(p, gap=0.005)
    sent = [i * 0.005 for i in range(len(out))]
    delays = [a - s for a, s in zip(out, sent, strict=True)]
    assert all(a < b for a, b in zip(out, out[1:], strict=False))  # never overtaken
    assert min(delays) >= 0.020 - 1e-9
    # order kept: a datagram may wait behind a slower one, never more than the jitter
    assert max(delays) <= 0.120 + 1e-4
    assert np.mean(delays) > 0.020 + 0.040  # the jitter is there (mean 50 ms, more queued)
    assert m.stats.delays_ms == pytest.approx([d * 1000 for d in delays])


def test_reorder_holds_some_back():
    p = LinkProfile(delay_ms=10, reorder=0.1, reorder_ms=50)
    m, out = run(p, gap=0.01)
    overtaken = sum(1 for i in range(len(out) - 1) if out[i] > out[i + 1])
    assert m.stats.reordered > 100
    assert overtaken == m.stats.reordered or overtaken >= 0.9 * m.stats.reordered
    held = [a - i * 0.01 for i, a in enumerate(out) if a - i * 0.01 > 0.055]
    assert len(held) == m.stats.reordered


def test_cap_paces_and_overflows():
    # 100-byte datagrams every 10 ms = 102.4 kbps with headers, on a 32-kbps link
    p = LinkProfile(cap_kbps=32, queue_ms=200)
    m, out = run(p, n=500, gap=0.01)
    got = [a for a in out if a is not None]
    per = (100 + UDP_IP_OVERHEAD) * 8 / 32000  # seconds per datagram on the link
    assert all(b - a >= per - 1e-9 for a, b in zip(got, got[1:], strict=False))
    assert m.stats.overflow > 0 and m.stats.lost == 0
    span = got[-1] - 0.0
    rate = len(got) * (100 + UDP_IP_OVERHEAD) * 8 / span / 1000
    assert rate <= 32 * 1.01
    assert max(m.stats.delays_ms) <= 200 + per * 1000 + 1e-6  # the queue's limit


def test_profile_checks():
    with pytest.raises(ValueError):
        LinkProfile(loss=1.5)
    with pytest.raises(ValueError):
        LinkProfile(jitter_ms=-1)
    with pytest.raises(ValueError):
        LinkProfile(cap_kbps=0)


def test_relay_forwards_between_two_sockets():
    """Datagrams through the relay on 127.0.0.1, both ways, with loss on one direction."""

    async def go():
        relay = UdpRelay(LinkModel(LinkProfile(delay_ms=5), 0),
                         LinkModel(LinkProfile(loss=1.0), 1))
        await relay.start()
        a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for s in (a, b):
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
        relay.peer_addr = {"a": a.getsockname(), "b": b.getsockname()}
        loop = asyncio.get_running_loop()
        a.sendto(b"from a", ("127.0.0.1", relay.port("b")))  # A talks to B's stand-in
        b.sendto(b"from b", ("127.0.0.1", relay.port("a")))
        data, addr = await asyncio.wait_for(loop.sock_recvfrom(b, 100), 2)
        assert data == b"from a"
        assert addr[1] == relay.port("a")  # B sees A at A's stand-in port
        await asyncio.sleep(0.05)
        with pytest.raises(BlockingIOError):
            a.recvfrom(100)  # lost (loss=1 on b -> a)
        s = relay.summary()
        assert s["a_to_b"]["delivered"] == 1 and s["b_to_a"]["lost"] == 1
        # 5 ms exactly, up to the float rounding of (now + 0.005) - now on the loop's clock
        assert s["a_to_b"]["delay_ms_p50"] == pytest.approx(5.0, abs=1e-6)
        relay.close()
        a.close()
        b.close()

    asyncio.run(go())


def test_splitter_routes_chunks():
    header = MAGIC + bytes([2, 3]) + struct.pack("<H", 4) + b"\0" * 8  # 8 + 4 + CRC
    src = chunk(SOURCE, bytes([1]) + b"image")
    frame = chunk(INTER, varint(5) + b"xyz")
    audio = chunk(AUDIO, varint(960 + AUDIO_ORIGIN) + b"opus")
    end = chunk(END, struct.pack("<I", 77))
    sp = wire.Splitter()
    setup, fcs = sp.split(header + src + frame)
    assert setup == header + src and fcs == frame
    setup, fcs = sp.split(audio + end)
    assert setup == end and fcs == audio
    assert wire.has_frame(frame) and not wire.has_frame(audio)
    assert wire.source_completed(src) == [1]
    [p] = wire.audio_packets(audio)
    assert (p.start, p.data) == (960, b"opus")
    # short audio chunks (format 2.6): their 16-bit starts unwrapped against the last
    # start heard, across the wrap within one message too
    short = (chunk(AUDIO_SHORT, struct.pack("<H", 65535) + b"c2")
             + chunk(AUDIO_SHORT, struct.pack("<H", 1) + b"c2"))
    assert sp.split(short) == (b"", short)
    last = 65534 * 960 - AUDIO_ORIGIN
    assert [p.start for p in wire.audio_packets(short, last)] == \
        [65535 * 960 - AUDIO_ORIGIN, 65537 * 960 - AUDIO_ORIGIN]
    with pytest.raises(ValueError):
        wire.audio_packets(chunk(AUDIO_SHORT, b"\x01"))
    assert wire.end_frames(end) == 77 and wire.has_end(end)
    with pytest.raises(ValueError):
        sp.split(frame[:-1])  # a chunk cut in two


def test_feedback_messages():
    assert wire.parse_feedback(wire.intra_request()) == ("intra", None)
    assert wire.parse_feedback(wire.recover_request(1234)) == ("recover", 1234)
    assert wire.parse_feedback(b"R12") is None and wire.parse_feedback(b"x") is None


def test_the_offline_parts_import_light():
    """The relay, the wire's routing and the report import without aiortc, torch or the
    video libraries (a tool can read a report, or test a link, without them)."""
    import json
    import subprocess
    code = ("import json, sys\nimport facecodec.call.link, facecodec.call.wire, "
            "facecodec.call.report, facecodec.call.summary, facecodec.cli.call_cmds\n"
            "print(json.dumps(sorted({n.split('.')[0] for n in sys.modules} & "
            "{'aiortc', 'aioice', 'torch', 'mediapipe', 'cv2', 'av'})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_the_command_says_how_to_get_aiortc(monkeypatch):
    from click.testing import CliRunner

    from facecodec.cli import cli
    result = CliRunner().invoke(cli, ["call", "--help"])
    assert result.exit_code == 0 and "loopback" in result.output and "send" in result.output
    monkeypatch.setitem(sys.modules, "aiortc", None)  # as if it were not installed
    result = CliRunner().invoke(cli, ["call", "loopback", "--seconds", "1"])
    assert result.exit_code != 0 and "pip install 'facecodec[call]'" in result.output


def test_a_cut_link_carries_its_first_datagrams_then_none():
    m = LinkModel(LinkProfile(cut_after=3), seed=0)
    fates = [m.send(float(i), 100) for i in range(5)]
    assert [f is not None for f in fates] == [True, True, True, False, False]
    assert m.stats.lost == 2
    with pytest.raises(ValueError, match="cut_after"):
        LinkProfile(cut_after=-1)
