"""The call's sound: Opus (libopus through PyAV), or Codec 2 (pycodec2) on budgets too
thin for Opus, sent as its own packets in the ``.fcs`` stream (format 2.2 / 2.4,
docs/format.md section 2.3) and put back beside the picture.

Time is counted in samples at 48 kHz (Opus's own clock) from the first video frame of the
stream: a packet says where its first sample goes, so the receiver places every packet
exactly (lip sync by construction) and fills a lost one with silence.

Opus packets of 60 ms: at a few kilobits per second each packet's framing in the stream
(about 8 bytes) costs ~1 kbps at that length, three times as much at 20 ms.

Codec 2 (2.4): Opus does not go below ~5 kbps with speech left (STOI 0.87 at 6 kbps asked,
0.73 at 5, 0.55 at 4 on the call clip's first minute), while Codec 2 keeps 0.80 at 2400
bit/s and 0.74 at 1300 (``bench/speech.py``). It codes 8 kHz narrowband: the sender takes every
6th sample after a low-pass, the receiver puts the 5 between back with the same filter
(:class:`Resample6`), so the stream's clock stays Opus's 48 kHz. Its packets are 80 or 120
ms (several Codec 2 frames; the budget chooses): 8 bytes of framing per packet are 0.8 and
0.5 kbps there.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pycodec2

from facecodec.bitstream.container import (
    AUDIO_CLOCK,
    AUDIO_INFO,
    CODEC2_MODES,
    AudioPacket,
    audio_declared,
    codec2_info,
)
from facecodec.defaults import AUDIO_KBPS as DEFAULT_KBPS
from facecodec.defaults import AUDIO_MAX_KBPS as MAX_KBPS
from facecodec.defaults import AUDIO_MIN_KBPS as MIN_KBPS
from facecodec.errors import InputError

RATE: int = AUDIO_CLOCK  # Opus codes at 48 kHz whatever the input's rate
FRAME_MS = 60
# Codec 2's packets: 40 ms, one Codec 2 frame at 1300 bit/s, for lip sync (a packet
# waits for its last sample: in a call at 6 kbps with the pictures shown as drawn, the
# sound came a median 125 ms after its picture with 120-ms packets, 81 ms with 80-ms
# ones, docs/call.md); longer when a budget cannot pay their framing (6 bytes a packet in
# a short audio chunk, format 2.6: 1300 bit/s is 2.6 kbps in the stream in 40-ms
# packets, 2.0 in 80-ms ones, 1.8 in 120-ms ones; facecodec.sender.budget chooses). Any
# multiple of 40 ms is whole Codec 2 frames.
CODEC2_PACKET_MS = 40
# Codec 2's own delay: its decoded speech came 21 and 25 ms after its input at 2400 and
# 1300 bit/s (the envelope's best alignment on the call clip, bench/speech.py); its packets
# are stamped 20 ms earlier, so the receiver places the sound in sync (after: -8..+5 ms)
CODEC2_DELAY = RATE * 20 // 1000
NARROW = 6  # Codec 2's 8 kHz is every 6th sample of the stream's 48 kHz
MAX_GAP_S = 10.0  # a live sender fills at most this much silence, then restarts its clock
_TIME_BASE = Fraction(1, RATE)


def _first_video_time(path: str | Path) -> float:
    """When the first video frame is shown (s), on the file's clock; 0 if unknown."""
    with av.open(str(path)) as c:
        if not c.streams.video:
            return 0.0
        for frame in c.decode(video=0):
            return float(frame.time or 0.0)
    return 0.0


def read_audio(path: str | Path) -> np.ndarray | None:
    """The first audio track of a video as mono int16 at 48 kHz, from the time of the
    video's first frame on (the stream's time 0); None when the file has no audio."""
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return None
        start_s = _first_video_time(path)
        stream = c.streams.audio[0]
        resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
        parts, first = [], None
        try:
            for frame in c.decode(stream):
                if first is None and frame.time is not None:
                    first = float(frame.time)
                for out in resampler.resample(frame):
                    parts.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                parts.append(out.to_ndarray().reshape(-1))
        except av.error.FFmpegError as e:  # a damaged track: what was read is kept
            if not parts:
                raise InputError(f"{path}: unreadable audio ({e})") from None
    pcm = np.concatenate(parts) if parts else np.zeros(0, np.int16)
    # align on the video: drop the sound before its first frame, pad a late start
    offset = round(((first or 0.0) - start_s) * RATE)
    if offset < 0:
        pcm = pcm[-offset:]
    elif offset > 0:
        pcm = np.concatenate([np.zeros(offset, np.int16), pcm])
    return pcm.astype(np.int16)


class OpusEncoder:
    """Mono int16 PCM at 48 kHz in, :class:`AudioPacket` out (VBR at ``kbps``, VoIP mode)."""

    def __init__(self, kbps: float = DEFAULT_KBPS, floor: float = MIN_KBPS):
        """``floor``: the lowest rate taken (the product's; ``bench/speech.py`` asks lower
        to show why it is there)."""
        if not floor <= kbps <= MAX_KBPS:
            raise InputError(f"audio bitrate must be in {floor:g}..{MAX_KBPS:g} kbps, "
                             f"got {kbps!r}")
        self._ctx = av.CodecContext.create("libopus", "w")
        self._ctx.sample_rate, self._ctx.layout, self._ctx.format = RATE, "mono", "s16"
        self._ctx.bit_rate = int(kbps * 1000)
        self._ctx.time_base = _TIME_BASE
        self._ctx.options = {"frame_duration": str(FRAME_MS), "application": "voip"}
        self._ctx.open()
        self.frame_size = self._ctx.frame_size
        self._buffer = np.zeros(0, np.int16)
        self._next = 0  # the first sample of the buffer

    def encode(self, pcm: np.ndarray) -> list[AudioPacket]:
        """Feed samples (continuing the previous ones); the packets now complete."""
        self._buffer = np.concatenate([self._buffer, np.asarray(pcm, np.int16).reshape(-1)])
        out = []
        while len(self._buffer) >= self.frame_size:
            out += self._frame(self._buffer[: self.frame_size])
            self._buffer = self._buffer[self.frame_size:]
        return out

    def flush(self) -> list[AudioPacket]:
        """The rest, the last frame padded with silence."""
        out = []
        if len(self._buffer):
            pad = np.zeros(self.frame_size - len(self._buffer), np.int16)
            out += self._frame(np.concatenate([self._buffer, pad]))
            self._buffer = np.zeros(0, np.int16)
        return out + self._packets(self._ctx.encode(None))

    def _frame(self, samples: np.ndarray) -> list[AudioPacket]:
        frame = av.AudioFrame.from_ndarray(samples[None], format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = RATE, self._next, _TIME_BASE
        self._next += len(samples)
        return self._packets(self._ctx.encode(frame))

    @staticmethod
    def _packets(packets) -> list[AudioPacket]:
        return [AudioPacket(int(p.pts), bytes(p)) for p in packets]


class LiveSound:
    """A live call's sound: the encoder of a :class:`Sound` whose samples start at
    ``origin`` (on the stream's 48 kHz clock), its packets written straight into a
    ``FcsWriter``."""

    def __init__(self, sound: Sound, origin: int):
        self.encoder = sound.encoder()
        self.origin = origin

    def encode_into(self, pcm: np.ndarray, writer) -> None:
        for p in self.encoder.encode(pcm):
            writer.add_audio(AudioPacket(p.start + self.origin, p.data))

    def flush_into(self, writer) -> None:
        for p in self.encoder.flush():
            writer.add_audio(AudioPacket(p.start + self.origin, p.data))


def encode_audio(pcm: np.ndarray, sound: Sound | float = DEFAULT_KBPS) -> list[AudioPacket]:
    """A whole track (mono int16, 48 kHz) as packets of ``sound`` (a number: Opus at that
    many kbps)."""
    enc = OpusEncoder(sound) if isinstance(sound, int | float) else sound.encoder()
    return enc.encode(pcm) + enc.flush()


class OpusDecoder:
    """:class:`AudioPacket` in (in order; any may be missing), continuous PCM out: each
    packet's samples land at their ``start``; a gap is silence; samples before 0 (the
    encoder's look-ahead) are dropped."""

    def __init__(self) -> None:
        self._ctx = av.CodecContext.create("libopus", "r")
        self._ctx.sample_rate, self._ctx.layout = RATE, "mono"
        self.position = 0  # the next sample out

    def decode(self, packet: AudioPacket) -> np.ndarray:
        pk = av.Packet(packet.data)
        pk.pts, pk.time_base = packet.start, _TIME_BASE
        try:
            frames = self._ctx.decode(pk)
        except av.error.FFmpegError:  # a damaged packet: a gap, as if lost
            return np.zeros(0, np.int16)
        out = []
        start = packet.start
        for f in frames:
            a = f.to_ndarray()
            a = a.reshape(-1) if a.dtype == np.int16 else \
                (np.clip(a.reshape(-1), -1, 1) * 32767).astype(np.int16)
            if start < self.position:  # overlaps what is out (or before 0): trim
                a = a[self.position - start:]
                start = self.position
            if start > self.position:
                out.append(np.zeros(start - self.position, np.int16))
            out.append(a)
            self.position = start + len(a)
            start = self.position
        return np.concatenate(out) if out else np.zeros(0, np.int16)

    def until(self, sample: int) -> np.ndarray:
        """Silence up to ``sample`` (a lost stretch), if the output has not reached it."""
        n = max(0, sample - self.position)
        self.position += n
        return np.zeros(n, np.int16)


def decode_audio(packets: Iterable[AudioPacket], total: int | None = None,
                 info: dict | None = None) -> np.ndarray:
    """Packets -> one mono int16 track from sample 0 (``total`` samples when given), of
    the sound the header's ``info`` declares (None: Opus)."""
    dec = sound_decoder(info or {"audio": dict(AUDIO_INFO)})
    parts = [dec.decode(p) for p in packets]
    if total is not None:
        parts.append(dec.until(total))
    pcm = np.concatenate(parts) if parts else np.zeros(0, np.int16)
    return pcm[:total] if total is not None else pcm


# --- the sound's codec: which one, and its encoder and decoder ---------------------------

@dataclass(frozen=True)
class Sound:
    """The sound's codec as a stream declares it: Opus at ``kbps`` (VBR: the rate asked), or
    Codec 2 at ``mode`` bit/s."""

    codec: str = "opus"
    kbps: float = DEFAULT_KBPS
    mode: int = 0
    # Codec 2's packets (Opus's are FRAME_MS): the sender's choice, not declared in the
    # stream (a reader takes any whole number of frames), so not compared
    packet_ms: int = field(default=CODEC2_PACKET_MS, compare=False)

    def __post_init__(self) -> None:
        if self.codec == "opus":
            if not MIN_KBPS <= self.kbps <= MAX_KBPS:
                raise InputError(f"audio bitrate must be in {MIN_KBPS:g}..{MAX_KBPS:g} kbps, "
                                 f"got {self.kbps!r}")
        elif self.codec != "codec2" or self.mode not in CODEC2_MODES:
            raise InputError(f"no such sound codec: {self.codec} {self.mode or ''}".strip())
        elif self.packet_ms not in (40, 80, 120, 160, 200, 240):
            raise InputError(f"Codec 2 packets of {self.packet_ms!r} ms: a multiple of 40 "
                             "up to 240")

    @classmethod
    def codec2(cls, mode: int, packet_ms: int = CODEC2_PACKET_MS) -> Sound:
        return cls("codec2", mode / 1000.0, int(mode), int(packet_ms))

    def info(self) -> dict:
        """The header's ``info`` entry: ``{"audio": ...}``."""
        return {"audio": self.audio_info()}

    def audio_info(self) -> dict:
        """The header's ``info["audio"]``."""
        return dict(AUDIO_INFO) if self.codec == "opus" else codec2_info(self.mode)

    def describe(self) -> str:
        return f"Opus {self.kbps:.1f}" if self.codec == "opus" else f"Codec 2 {self.mode}"

    def encoder(self) -> OpusEncoder | Codec2Encoder:
        return (OpusEncoder(self.kbps) if self.codec == "opus"
                else Codec2Encoder(self.mode, self.packet_ms))


def declared_sound(info: dict) -> Sound | None:
    """The sound a header's ``info`` declares (None: none this reader knows)."""
    if not audio_declared(info):
        return None
    audio = info["audio"]
    return Sound() if audio["codec"] == "opus" else Sound.codec2(audio["mode"])


def sound_decoder(info: dict) -> OpusDecoder | Codec2Decoder:
    """The decoder of the sound a header's ``info`` declares (Opus's when it declares none
    this reader knows: its packets are then never read, see the container)."""
    sound = declared_sound(info)
    return Codec2Decoder(sound.mode) if sound and sound.codec == "codec2" else OpusDecoder()


class Resample6:
    """48 kHz <-> 8 kHz for Codec 2, streaming: a windowed-sinc low-pass (cut-off 3.6 kHz,
    97 taps: 1 ms of delay at 48 kHz) before keeping every 6th sample, or after putting 5
    zeros between samples. The filter is linear phase, so speech keeps its shape; its 1 ms
    each way is part of the delay :data:`CODEC2_DELAY` undoes."""

    TAPS = 97

    def __init__(self) -> None:
        n = np.arange(self.TAPS) - (self.TAPS - 1) / 2
        cut = 3600.0 / RATE  # cycles per sample at 48 kHz
        h = 2 * cut * np.sinc(2 * cut * n) * np.hamming(self.TAPS)
        self.h = h / h.sum()
        self._down = np.zeros(self.TAPS - 1)  # the last input samples at 48 kHz
        self._phase = 0  # the next input sample's position modulo 6
        self._up = np.zeros(self.TAPS // NARROW + 1)  # the last 8 kHz samples

    def down(self, pcm48: np.ndarray) -> np.ndarray:
        """48 kHz int16 in (continuing), 8 kHz float out (every 6th filtered sample)."""
        x = np.concatenate([self._down, np.asarray(pcm48, np.float64)])
        y = np.convolve(x, self.h, mode="valid")  # y[k]: the filter ending at x's own k
        first = (-self._phase) % NARROW
        self._phase = (self._phase + len(pcm48)) % NARROW
        self._down = x[len(x) - (self.TAPS - 1):]
        return y[first::NARROW]

    def up(self, pcm8: np.ndarray) -> np.ndarray:
        """8 kHz in (continuing), 48 kHz float out: 6 samples per sample in."""
        x = np.concatenate([self._up, np.asarray(pcm8, np.float64)])
        z = np.zeros(len(x) * NARROW)
        z[::NARROW] = x * NARROW  # the zeros between carry no energy: keep the level
        y = np.convolve(z, self.h)
        start = len(self._up) * NARROW
        self._up = x[len(x) - len(self._up):]
        return y[start: start + len(pcm8) * NARROW]


def _int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


class Codec2Encoder:
    """Mono int16 PCM at 48 kHz in, :class:`AudioPacket` of ``packet_ms`` out (Codec 2
    frames back to back); the same interface as :class:`OpusEncoder`."""

    def __init__(self, mode: int, packet_ms: int = CODEC2_PACKET_MS):
        self._codec = pycodec2.Codec2(mode)
        self._n = self._codec.samples_per_frame()  # at 8 kHz
        self._per_packet = max(1, packet_ms * 8 // self._n)  # Codec 2 frames per packet
        self.frame_size = self._per_packet * self._n * NARROW  # at 48 kHz
        self._resample = Resample6()
        self._buffer = np.zeros(0, np.int16)
        self._next = 0

    def encode(self, pcm: np.ndarray) -> list[AudioPacket]:
        self._buffer = np.concatenate([self._buffer, np.asarray(pcm, np.int16).reshape(-1)])
        out = []
        while len(self._buffer) >= self.frame_size:
            out.append(self._packet(self._buffer[: self.frame_size]))
            self._buffer = self._buffer[self.frame_size:]
        return out

    def flush(self) -> list[AudioPacket]:
        if not len(self._buffer):
            return []
        pad = np.zeros(self.frame_size - len(self._buffer), np.int16)
        out = [self._packet(np.concatenate([self._buffer, pad]))]
        self._buffer = np.zeros(0, np.int16)
        return out

    def _packet(self, samples: np.ndarray) -> AudioPacket:
        narrow = _int16(self._resample.down(samples))
        data = b"".join(bytes(self._codec.encode(narrow[i: i + self._n]))
                        for i in range(0, len(narrow), self._n))
        packet = AudioPacket(self._next - CODEC2_DELAY, data)
        self._next += len(samples)
        return packet


class Codec2Decoder:
    """:class:`AudioPacket` in (in order; any may be missing), continuous PCM at 48 kHz out,
    as :class:`OpusDecoder`: a packet whose size is not a whole number of Codec 2 frames
    is damaged, a gap."""

    def __init__(self, mode: int) -> None:
        self._codec = pycodec2.Codec2(mode)
        self._n = self._codec.samples_per_frame()
        self._bytes = self._codec.bytes_per_frame()
        self._resample = Resample6()
        self.position = 0

    def decode(self, packet: AudioPacket) -> np.ndarray:
        data = packet.data
        if not data or len(data) % self._bytes:
            return np.zeros(0, np.int16)
        narrow = np.concatenate([
            np.asarray(self._codec.decode(data[i: i + self._bytes]), np.float64)
            for i in range(0, len(data), self._bytes)])
        start = packet.start
        out = []
        if start > self.position:  # a gap: silence, through the filter to keep its state
            out.append(self.until(start))
        wide = _int16(self._resample.up(narrow))
        if start < self.position:  # overlaps what is out: trim
            wide = wide[self.position - start:]
        out.append(wide)
        self.position += len(wide)
        return np.concatenate(out)

    def until(self, sample: int) -> np.ndarray:
        n = max(0, sample - self.position)
        if not n:
            return np.zeros(0, np.int16)
        # whole 8 kHz samples through the filter; the last partial one as plain silence
        wide = _int16(self._resample.up(np.zeros(n // NARROW)))
        self.position += n
        return np.concatenate([wide, np.zeros(n - len(wide), np.int16)])
