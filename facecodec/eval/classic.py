"""Classic codecs through PyAV (FFmpeg's libx264, libx265, libsvtav1) at a matched bitrate.

Rate control. At a few kbps the encoders' own rate control overshoots (and needs a
look-ahead a 10 s clip does not have), so each codec runs in constant-quality mode (CRF)
and the CRF is searched per clip, by bisection, for the all-in bitrate asked for (first
intra frame included). The result is compared at the bitrate actually produced; when even
the codec's coarsest CRF is above the target (at 256x256 the intra frame alone can be
most of a short clip's budget) the coarsest one is reported, with ``reached=False``.

Bit accounting: what a packet transport carries of the elementary stream. Counted: every
NAL unit (H.264, HEVC) or OBU (AV1) the decoder needs, with their headers, but not the
Annex-B start codes (a transport frames packets itself, as RTP does). Not counted and not
given to the decoder: SEI NAL units (x264 writes its 5 kbit settings banner into the first
frame, x265 2-3 kbit unless ``info=0``), access unit delimiters and filler, and AV1
temporal delimiters and padding (the RTP AV1 payload format drops temporal delimiters).
The decoder is fed exactly the counted bytes, so the frames scored are the frames those
bits decode to.

Stream layout: one intra frame at the start (key-frame interval longer than any clip),
each encoder's default GOP structure (B-frames / random access: the best quality these
encoders have at a rate, a delay a call would not accept), one thread each.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from facecodec.baselayer import av1_obus
from facecodec.errors import FacecodecError
from facecodec.eval.base import Encoded, EvalClip, Method

_START_CODE = re.compile(b"\x00\x00\x01")
# NAL unit types a decoder does not need (see the module docstring).
_DROP_H264 = frozenset({6, 9, 12})  # SEI, access unit delimiter, filler
_DROP_HEVC = frozenset({35, 38, 39, 40})  # AUD, filler, prefix SEI, suffix SEI
_DROP_AV1 = frozenset({2, 15})  # temporal delimiter, padding


# --- bitstream units ----------------------------------------------------------------------

def annexb_units(data: bytes) -> list[bytes]:
    """The NAL units of an Annex-B byte stream, without start codes (emulation prevention
    guarantees 00 00 01 never occurs inside a unit)."""
    starts = [m.end() for m in _START_CODE.finditer(data)]
    units = []
    for k, begin in enumerate(starts):
        end = starts[k + 1] - 3 if k + 1 < len(starts) else len(data)
        units.append(data[begin:end].rstrip(b"\x00"))  # trailing zeros: next start code's
    return [u for u in units if u]


def transport_payload(family: str, data: bytes) -> bytes:
    """``data`` minus what the transport does not carry, as the decoder is fed it: AV1 OBUs
    as they are, H.264/HEVC units behind 4-byte start codes (not counted: see
    :func:`payload_bits`)."""
    if family == "av1":
        return b"".join(obu for t, obu in av1_obus(data) if t not in _DROP_AV1)
    drop = _DROP_H264 if family == "h264" else _DROP_HEVC
    kept = [u for u in annexb_units(data) if _nal_type(family, u) not in drop]
    return b"".join(b"\x00\x00\x00\x01" + u for u in kept)


def payload_bits(family: str, payload: bytes) -> int:
    """Bits of a :func:`transport_payload` that count: start codes excluded."""
    if family == "av1":
        return 8 * len(payload)
    return 8 * sum(len(u) for u in annexb_units(payload))


def _nal_type(family: str, unit: bytes) -> int:
    return unit[0] & 0x1F if family == "h264" else (unit[0] >> 1) & 0x3F


# --- codecs -------------------------------------------------------------------------------

@dataclass(frozen=True)
class CodecSpec:
    """One FFmpeg encoder/decoder pair and its quality knob (higher = fewer bits)."""

    name: str
    encoder: str
    decoder: str
    family: str  # "h264" | "hevc" | "av1"
    q_min: float
    q_max: float  # the coarsest: the lowest rate the codec can reach this way
    integer: bool  # the knob takes whole values only
    preset: str
    options: Callable[[float, str], dict[str, str]]


def _x264(q: float, preset: str) -> dict[str, str]:
    return {"crf": f"{q:.3f}", "preset": preset, "threads": "1"}


def _x265(q: float, preset: str) -> dict[str, str]:
    # info=0: no settings SEI; pools/frame-threads: one thread; log-level: no banner
    return {"crf": str(round(q)), "preset": preset,
            "x265-params": "pools=1:frame-threads=1:info=0:log-level=error"}


def _svtav1(q: float, preset: str) -> dict[str, str]:
    return {"crf": str(round(q)), "preset": preset, "svtav1-params": "lp=1"}


# Presets: x264/x265 "medium" (x264 "veryslow" gained nothing at 8 kbps on a val clip);
# SVT-AV1 preset 5 (preset 8 spent 15 % more bits at the same CRF, preset 3 was 2.3x
# slower for 0.1 dB). CRF ranges are the encoders' own: x264 and x265 stop at 51 (x264
# clamps above), SVT-AV1 at 63.
CODECS: dict[str, CodecSpec] = {
    "x264": CodecSpec("x264", "libx264", "h264", "h264", 0.0, 51.0, False, "medium", _x264),
    "x265": CodecSpec("x265", "libx265", "hevc", "hevc", 0.0, 51.0, True, "medium", _x265),
    "svtav1": CodecSpec("svtav1", "libsvtav1", "libdav1d", "av1", 1.0, 63.0, True, "5",
                        _svtav1),
}


@dataclass
class Trial:
    """One encode of a clip at quality ``q``."""

    q: float
    payloads: list[bytes]  # per packet, in decode order, as fed to the decoder
    frame_bits: np.ndarray  # (T,) by presentation index
    seconds: float

    def kbps(self, fps: float) -> float:
        return float(self.frame_bits.sum()) * fps / len(self.frame_bits) / 1000.0


def check_available(spec: CodecSpec) -> None:
    missing = [c for c in (spec.encoder, spec.decoder) if c not in av.codecs_available]
    if missing:
        raise FacecodecError(f"{spec.name}: this PyAV/FFmpeg build has no {missing[0]}")


def encode(spec: CodecSpec, frames: np.ndarray, q: float, fps: float = 15.0,
           preset: str | None = None) -> Trial:
    """Encode (T, H, W, 3) uint8 RGB frames at quality ``q`` (RGB -> YUV 4:2:0 included in
    the time, as a sender would pay it)."""
    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its config at info level
    t, h, w, _ = frames.shape
    start = time.perf_counter()
    cc = av.CodecContext.create(spec.encoder, "w")
    cc.width, cc.height, cc.pix_fmt = w, h, "yuv420p"
    rate = Fraction(fps).limit_denominator(1001)
    cc.time_base, cc.framerate = 1 / rate, rate
    cc.gop_size = max(t + 1, 250)  # one intra frame for the whole clip
    cc.options = spec.options(q, preset or spec.preset)
    packets = []
    for i, image in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame = frame.reformat(format="yuv420p")
        frame.pts = i
        packets += cc.encode(frame)
    packets += cc.encode(None)
    seconds = time.perf_counter() - start
    bits = np.zeros(t, dtype=np.int64)
    payloads = []
    for p in packets:
        payload = transport_payload(spec.family, bytes(p))
        payloads.append(payload)
        index = min(max(int(p.pts if p.pts is not None else 0), 0), t - 1)
        bits[index] += payload_bits(spec.family, payload)
    return Trial(q, payloads, bits, seconds)


def decode(spec: CodecSpec, payloads: list[bytes]) -> tuple[np.ndarray, float]:
    """Decoded RGB frames of a trial's payloads, in presentation order, and the time."""
    start = time.perf_counter()
    cc = av.CodecContext.create(spec.decoder, "r")
    cc.thread_count = 1
    out = []
    for data in payloads:
        out += [f.to_ndarray(format="rgb24") for f in cc.decode(av.Packet(data))]
    out += [f.to_ndarray(format="rgb24") for f in cc.decode(None)]
    return np.stack(out), time.perf_counter() - start


def search_quality(trial: Callable[[float], Trial], target_kbps: float, fps: float,
                   q_min: float, q_max: float, integer: bool, rtol: float = 0.03,
                   max_trials: int = 12) -> tuple[Trial, bool]:
    """The trial whose all-in rate is nearest to ``target_kbps`` (in log rate), by bisection
    on the quality knob (rate falls as it rises); stops early within ``rtol``. Returns the
    trial and whether the target was reached: False when the coarsest setting is still
    above it by more than ``rtol``. ``trial`` should be memoised (searches for several
    targets on one clip share their encodes)."""
    def near(tr: Trial) -> float:
        return abs(math.log(max(tr.kbps(fps), 1e-9) / target_kbps))

    coarsest = trial(q_max)
    if coarsest.kbps(fps) >= target_kbps:
        return coarsest, coarsest.kbps(fps) <= target_kbps * (1 + rtol)
    # rate(lo) > target >= rate(hi); the finest setting is not encoded unless the search
    # comes down to it (at CRF 0-1 an encode is slow and its rate far above any target)
    lo, hi = q_min, q_max
    tried = [coarsest]
    for _ in range(max_trials):
        if hi - lo <= (1 if integer else 0.02):
            break
        mid = (lo + hi) / 2
        mid = float(math.floor(mid)) if integer else mid
        tr = trial(mid)
        tried.append(tr)
        if near(tr) <= math.log1p(rtol):
            return tr, True
        if tr.kbps(fps) > target_kbps:
            lo = mid
        else:
            hi = mid
    if lo == q_min:  # every setting tried was under the target: maybe the finest is too
        tried.append(trial(q_min))
    return min(tried, key=near), True


class ClassicCodec(Method):
    """A classic codec at matched bitrate (see the module docstring)."""

    def __init__(self, codec: str, preset: str | None = None, rtol: float = 0.03):
        self.spec = CODECS[codec]
        check_available(self.spec)
        self.name = codec
        self.preset = preset or self.spec.preset
        self.rtol = float(rtol)
        self.description = "CRF searched per clip for the target all-in rate"
        self._memo: dict[float, Trial] = {}
        self._memo_clip: tuple[str, int] | None = None

    def operating_points(self, rates_kbps: Sequence[float]) -> list[float | None]:
        return list(rates_kbps)

    def settings(self) -> dict[str, object]:
        return {"encoder": self.spec.encoder, "decoder": self.spec.decoder,
                "preset": self.preset, "knob": "crf", "range": [self.spec.q_min,
                                                                  self.spec.q_max]}

    def _trial(self, clip: EvalClip) -> Callable[[float], Trial]:
        key = (clip.name, len(clip.frames))
        if self._memo_clip != key:
            self._memo, self._memo_clip = {}, key

        def run(q: float) -> Trial:
            if q not in self._memo:
                self._memo[q] = encode(self.spec, clip.frames, q, clip.fps, self.preset)
            return self._memo[q]

        return run

    def run(self, clip: EvalClip, target_kbps: float | None) -> Encoded:
        if target_kbps is None:
            raise ValueError(f"{self.name} needs a target rate")
        tr, reached = search_quality(self._trial(clip), target_kbps, clip.fps,
                                     self.spec.q_min, self.spec.q_max, self.spec.integer,
                                     self.rtol)
        frames, seconds = decode(self.spec, tr.payloads)
        if frames.shape != clip.frames.shape:
            raise FacecodecError(f"{self.name} on {clip.name}: decoded {frames.shape}, "
                                 f"expected {clip.frames.shape}")
        return Encoded(frames, tr.frame_bits.copy(), 0, tr.seconds, seconds,
                       {"crf": round(tr.q, 3)}, reached)
