"""The call's sound (format 2.2: Opus; 2.4: Codec 2): packets through the bitstream and
back, placed sample-exactly, and what a receiver does with damaged or hostile audio
chunks."""

from __future__ import annotations

import io
from fractions import Fraction

import numpy as np
import pytest
from bitstream_helpers import random_walk

from facecodec.audio import (
    CODEC2_DELAY,
    RATE,
    Codec2Decoder,
    OpusDecoder,
    OpusEncoder,
    Resample6,
    Sound,
    declared_sound,
    decode_audio,
    encode_audio,
)
from facecodec.bitstream.chunks import (
    AUDIO,
    AUDIO_ORIGIN,
    AUDIO_SHORT,
    SHORT_WRAP,
    chunk,
    short_audio_start,
    short_audio_stored,
    varint,
)
from facecodec.bitstream.container import (
    AUDIO_INFO,
    AudioPacket,
    DecodedFrame,
    FcsReader,
    FcsWriter,
    Header,
    audio_declared,
    codec2_info,
)
from facecodec.bitstream.prior import Prior
from facecodec.bitstream.streams import TABLES
from facecodec.errors import FormatError, InputError

TABLE = TABLES["sup_unsup_expr"]
PRIOR = Prior.untrained(TABLE)


def tone(seconds: float, hz: float = 440.0) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return (np.sin(2 * np.pi * hz * t) * 8000).astype(np.int16)


def test_opus_round_trip_keeps_the_signal_in_place():
    pcm = tone(1.0)
    packets = encode_audio(pcm, 12)
    starts = [p.start for p in packets]
    assert starts[0] < 0 and set(np.diff(starts)) == {2880}  # 60-ms packets
    out = decode_audio(packets, len(pcm))
    assert len(out) == len(pcm)
    assert np.corrcoef(out[4800:-4800], pcm[4800:-4800])[0, 1] > 0.9  # in phase: no shift
    bits = 8 * sum(len(p.data) for p in packets)
    assert bits < 16_000  # about its 12 kbps over one second


def test_a_lost_packet_is_silence_and_the_rest_stays_in_place():
    pcm = tone(1.0)
    packets = encode_audio(pcm, 12)
    whole = decode_audio(packets, len(pcm))
    lost = packets[5]
    out = decode_audio(packets[:5] + packets[6:], len(pcm))
    gap = slice(lost.start, lost.start + 2880)
    assert not out[gap].any()
    after = slice(lost.start + 2880 + 960, len(pcm))  # (the decoder re-converges)
    assert np.corrcoef(out[after], whole[after])[0, 1] > 0.9
    assert len(out) == len(pcm)
    dec = OpusDecoder()  # a damaged packet is a gap too, never an exception
    assert dec.decode(AudioPacket(0, b"\xff" * 3)).dtype == np.int16


def test_the_encoder_refuses_a_bitrate_opus_cannot_serve():
    with pytest.raises(InputError, match="audio bitrate"):
        OpusEncoder(2)


def _stream(audio: bool = True) -> tuple[FcsWriter, io.BytesIO]:
    info = {"audio": dict(AUDIO_INFO)} if audio else {}
    out = io.BytesIO()
    w = FcsWriter(out, Header(TABLE, PRIOR.id, Fraction(15), n_sources=1, info=info), PRIOR)
    return w, out


def _events(data: bytes, **kw) -> list:
    return list(FcsReader(data, prior=PRIOR, **kw))


def test_audio_chunks_through_the_container_interleaved_with_frames():
    frames = random_walk(TABLE, 30, seed=1, step=0.002)
    packets = encode_audio(tone(2.0))
    w, out = _stream()
    w.add_source(0, "jpeg", 8, 8, b"\xff\xd8fake", frames[0])
    sound = iter(packets)
    p = next(sound)
    for i, f in enumerate(frames):
        while p is not None and p.start < (i + 1) * RATE / 15:
            w.add_audio(p)
            p = next(sound, None)
        w.add_frame(f)
    w.close()
    events = _events(out.getvalue())
    got = [e for e in events if isinstance(e, AudioPacket)]
    assert got == packets[: len(got)] and len(got) >= 30 * RATE // 15 // 2880
    # each audio packet comes before the frame its start falls in
    order = [(e.index if isinstance(e, DecodedFrame) else None, e) for e in events]
    seen = 0
    for index, e in order:
        if index is not None:
            seen = index + 1
        elif isinstance(e, AudioPacket):
            assert e.start < seen * RATE / 15 + RATE / 15
    reader = FcsReader(out.getvalue(), prior=PRIOR)
    list(reader)
    assert reader.chunk_bytes["audio"] == w.audio_bytes > 0


def test_the_writer_refuses_audio_it_cannot_send():
    w, _ = _stream(audio=False)
    with pytest.raises(ValueError, match="declares no audio"):
        w.add_audio(AudioPacket(0, b"x"))
    w, _ = _stream()
    w.add_audio(AudioPacket(0, b"x"))
    for bad in (AudioPacket(0, b"y"), AudioPacket(-RATE - 1, b"y"), AudioPacket(10, b""),
                AudioPacket(20, b"z" * 4001)):
        with pytest.raises(ValueError):
            w.add_audio(bad)


def test_hostile_audio_chunks_are_refused_or_skipped():
    frames = random_walk(TABLE, 3, seed=2, step=0.002)
    base, _ = _stream()
    cases = {
        "audio chunk in a stream whose header declares no audio": (False, [(0, b"x")]),
        "is not after the previous one": (True, [(100, b"x"), (100, b"y")]),
        "holds 0 or more than": (True, [(0, b"")]),
    }
    for reason, (declared, chunks) in cases.items():
        w, out = _stream(declared)
        w.add_source(0, "jpeg", 8, 8, b"\xff\xd8fake", frames[0])
        for start, data in chunks:
            out.write(chunk(AUDIO, varint(start + AUDIO_ORIGIN) + data))
        for f in frames:
            w.add_frame(f)
        w.close()
        with pytest.raises(FormatError, match=reason):
            _events(out.getvalue())
        events = _events(out.getvalue(), tolerant=True)  # the frames still come out
        assert sum(isinstance(e, DecodedFrame) for e in events) == 3


# --- Codec 2 (format 2.4): the sound on budgets too thin for Opus ------------------------

def test_the_resampler_keeps_speech_band_tones_and_removes_the_rest():
    rs = Resample6()
    pcm = tone(1.0, 440.0).astype(np.float64) + tone(1.0, 6000.0)  # 6 kHz: over 4 kHz
    narrow = np.concatenate([rs.down(pcm[:10_001]), rs.down(pcm[10_001:])])  # streamed
    assert len(narrow) == len(pcm) // 6
    wide = Resample6().up(narrow)
    assert len(wide) == len(pcm)
    delay = Resample6.TAPS - 1  # half the filter on each side: 1 ms
    ref = tone(1.0, 440.0).astype(np.float64)[: len(pcm) - delay]
    out = wide[delay:]
    inner = slice(4800, -4800)
    assert np.corrcoef(out[inner], ref[inner])[0, 1] > 0.99  # the 440 Hz, in place
    assert np.std(out[inner]) == pytest.approx(np.std(ref[inner]), rel=0.05)  # its level


def test_codec2_round_trip_places_the_sound_and_a_lost_packet_is_silence():
    pcm = tone(1.0, 300.0)
    sound = Sound.codec2(1300, packet_ms=120)
    packets = encode_audio(pcm, sound)
    # 120-ms packets, stamped Codec 2's own 20-ms delay early
    assert CODEC2_DELAY == 960
    assert [p.start for p in packets] == [5760 * k - 960 for k in range(len(packets))]
    assert all(len(p.data) == 21 for p in packets)  # 3 frames of 52 bits in 7 bytes
    short = encode_audio(pcm, Sound.codec2(1300))  # the default: 40 ms, one frame
    assert [p.start for p in short] == [1920 * k - 960 for k in range(len(short))]
    assert all(len(p.data) == 7 for p in short)
    info = sound.info()
    assert declared_sound(info) == sound and audio_declared(info)
    out = decode_audio(packets, len(pcm), info)
    assert len(out) == len(pcm)
    # a vocoder keeps the spectrum, not the waveform: the 300 Hz carries the energy
    spectrum = np.abs(np.fft.rfft(out[5760:-5760].astype(float)))
    peak_hz = np.argmax(spectrum) * RATE / len(out[5760:-5760])
    assert abs(peak_hz - 300) < 25 and np.std(out) > 100  # (a vocoder's pure tone is soft)
    lost = decode_audio(packets[:3] + packets[4:], len(pcm), info)
    assert not lost[3 * 5760 - 960 + 200: 4 * 5760 - 960].any()  # (the filter's tail aside)
    assert np.std(lost[5 * 5760:]) > 100  # and the sound goes on after
    dec = Codec2Decoder(1300)  # a packet that is not whole Codec 2 frames: a gap
    assert len(dec.decode(AudioPacket(0, b"\x01" * 20))) == 0


def test_a_codec2_stream_through_the_container_and_an_unknown_mode_is_no_sound():
    frames = random_walk(TABLE, 15, seed=3, step=0.002)
    packets = encode_audio(tone(1.0), Sound.codec2(2400))
    for info, read in ((Sound.codec2(2400).info(), True),
                       ({"audio": {**codec2_info(2400), "mode": 999}}, False)):
        out = io.BytesIO()
        w = FcsWriter(out, Header(TABLE, PRIOR.id, Fraction(15), n_sources=1, info=info),
                      PRIOR)
        w.add_source(0, "jpeg", 8, 8, b"\xff\xd8fake", frames[0])
        if read:
            for p in packets:
                w.add_audio(p)
        else:  # a writer cannot declare it; a hostile peer's bytes can
            with pytest.raises(ValueError, match="declares no audio"):
                w.add_audio(packets[0])
            out.write(chunk(AUDIO, varint(AUDIO_ORIGIN) + packets[0].data))
        for f in frames:
            w.add_frame(f)
        w.close()
        events = _events(out.getvalue(), tolerant=True)
        got = [e for e in events if isinstance(e, AudioPacket)]
        assert got == (packets if read else [])
        assert sum(isinstance(e, DecodedFrame) for e in events) == 15
    with pytest.raises(InputError, match="no such sound codec"):
        Sound.codec2(700)


# --- Short audio chunks (format 2.6): a 16-bit start for the short packets of lip sync ---

STEP = 960  # 20 ms at 48 kHz


def _at(steps: int) -> int:
    """The start sample of a packet ``steps`` 20-ms steps after -1 s."""
    return steps * STEP - AUDIO_ORIGIN


def test_a_short_start_is_its_steps_modulo_the_wrap_unwrapped_against_the_previous():
    first = -AUDIO_ORIGIN - 1  # "no packet yet"
    assert short_audio_stored(-960, first) == 49  # Codec 2's first packet, 20 ms early
    assert short_audio_start(49, first) == -960
    # across the wrap (21.8 min into a call): stored 3, placed after the previous
    assert short_audio_stored(_at(SHORT_WRAP + 3), _at(SHORT_WRAP - 5)) == 3
    assert short_audio_start(3, _at(SHORT_WRAP - 5)) == _at(SHORT_WRAP + 3)
    # a reader that lost 5 min of packets still places the next one
    assert short_audio_start(3, _at(SHORT_WRAP + 3 - 15_000)) == _at(SHORT_WRAP + 3)
    # what the short form cannot carry: off the 20-ms grid (Opus), too far from the last
    assert short_audio_stored(-312, first) is None
    assert short_audio_stored(_at(SHORT_WRAP // 4), first) is None
    assert short_audio_stored(_at(SHORT_WRAP // 4 - 1), first) == SHORT_WRAP // 4 - 1


def _codec2_stream() -> tuple[FcsWriter, io.BytesIO]:
    out = io.BytesIO()
    header = Header(TABLE, PRIOR.id, Fraction(15), n_sources=1, info=Sound.codec2(1300).info())
    return FcsWriter(out, header, PRIOR), out


def test_codec2_packets_go_in_short_chunks_and_come_back_across_the_wrap():
    frames = random_walk(TABLE, 3, seed=4, step=0.002)
    packets = encode_audio(tone(0.5, 300.0), Sound.codec2(1300))
    late = [AudioPacket(_at(SHORT_WRAP - 3 + 2 * k), b"\x07" * 7) for k in range(4)]
    w, out = _codec2_stream()
    w.add_source(0, "jpeg", 8, 8, b"\xff\xd8fake", frames[0])
    for p in packets:
        w.add_audio(p)
    # 7 bytes of Codec 2 in a 13-byte chunk: kind, length, start (u16), CRC
    assert w.audio_bytes == 13 * len(packets)
    for p in late:
        w.add_audio(p)
    w.add_audio(AudioPacket(_at(SHORT_WRAP // 2 * 3), b"\x07" * 7))  # 10.9 min later: full
    for f in frames:
        w.add_frame(f)
    w.close()
    data = out.getvalue()
    # the jump to 21.8 min is too far for the short form: that packet and the last go full
    assert data.count(bytes([AUDIO_SHORT, 9])) == len(packets) + len(late) - 1
    got = [e for e in _events(data) if isinstance(e, AudioPacket)]
    assert got == packets + late + [AudioPacket(_at(SHORT_WRAP // 2 * 3), b"\x07" * 7)]
    # the packet before the wrap lost: the ones after it still land after the wrap
    lost = data.replace(chunk(AUDIO_SHORT, bytes([SHORT_WRAP - 1 & 0xFF, 0xFF]) + b"\x07" * 7),
                        b"", 1)
    assert len(lost) == len(data) - 13
    got = [e for e in _events(lost, tolerant=True) if isinstance(e, AudioPacket)]
    assert got[len(packets):] == [late[0], *late[2:],
                                  AudioPacket(_at(SHORT_WRAP // 2 * 3), b"\x07" * 7)]


def test_hostile_short_audio_chunks_are_refused_or_skipped():
    frames = random_walk(TABLE, 3, seed=5, step=0.002)
    cases = {
        "short audio chunk without its start": [b"\x01"],
        "holds 0 or more than": [b"\x40\x00"],
        "is not after the previous one": [b"\x40\x00x", b"\x40\x00y"],
        # a start that unwraps to before -1 s: no writer makes it
        "is not after the previous one ": [(SHORT_WRAP - 1).to_bytes(2, "little") + b"x"],
    }
    for reason, payloads in cases.items():
        w, out = _codec2_stream()
        w.add_source(0, "jpeg", 8, 8, b"\xff\xd8fake", frames[0])
        for payload in payloads:
            out.write(chunk(AUDIO_SHORT, payload))
        for f in frames:
            w.add_frame(f)
        w.close()
        with pytest.raises(FormatError, match=reason.strip()):
            _events(out.getvalue())
        events = _events(out.getvalue(), tolerant=True)  # the frames still come out
        assert sum(isinstance(e, DecodedFrame) for e in events) == 3
