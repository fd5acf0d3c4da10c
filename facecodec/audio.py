"""The call's sound: Opus (libopus through PyAV), sent as its own packets in the ``.fcs``
stream (format 2.2, docs/format.md section 2.3) and put back beside the picture.

Time is counted in samples at 48 kHz (Opus's own clock) from the first video frame of the
stream: a packet says where its first sample goes, so the receiver places every packet
exactly (lip sync by construction) and fills a lost one with silence.

Opus packets of 60 ms: at a few kilobits per second each packet's framing in the stream
(about 8 bytes) costs ~1 kbps at that length, three times as much at 20 ms.
"""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from facecodec.bitstream.container import AUDIO_INFO, AudioPacket
from facecodec.defaults import AUDIO_KBPS as DEFAULT_KBPS
from facecodec.defaults import AUDIO_MAX_KBPS as MAX_KBPS
from facecodec.defaults import AUDIO_MIN_KBPS as MIN_KBPS
from facecodec.errors import InputError

RATE: int = AUDIO_INFO["rate"]  # Opus codes at 48 kHz whatever the input's rate
FRAME_MS = 60
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

    def __init__(self, kbps: float = DEFAULT_KBPS):
        if not MIN_KBPS <= kbps <= MAX_KBPS:
            raise InputError(f"audio bitrate must be in {MIN_KBPS:g}..{MAX_KBPS:g} kbps, "
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


class LiveOpus:
    """A live call's sound: an :class:`OpusEncoder` whose samples start at ``origin`` (on
    the stream's 48 kHz clock), its packets written straight into a ``FcsWriter``."""

    def __init__(self, kbps: float, origin: int):
        self.encoder = OpusEncoder(kbps)
        self.origin = origin

    def encode_into(self, pcm: np.ndarray, writer) -> None:
        for p in self.encoder.encode(pcm):
            writer.add_audio(AudioPacket(p.start + self.origin, p.data))

    def flush_into(self, writer) -> None:
        for p in self.encoder.flush():
            writer.add_audio(AudioPacket(p.start + self.origin, p.data))


def encode_audio(pcm: np.ndarray, kbps: float = DEFAULT_KBPS) -> list[AudioPacket]:
    """A whole track (mono int16, 48 kHz) as Opus packets."""
    enc = OpusEncoder(kbps)
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


def decode_audio(packets: Iterable[AudioPacket], total: int | None = None) -> np.ndarray:
    """Packets -> one mono int16 track from sample 0 (``total`` samples when given)."""
    dec = OpusDecoder()
    parts = [dec.decode(p) for p in packets]
    if total is not None:
        parts.append(dec.until(total))
    pcm = np.concatenate(parts) if parts else np.zeros(0, np.int16)
    return pcm[:total] if total is not None else pcm
