"""The rate budget (issue #17): what ``Encoder(kbps=R)`` / ``encode --kbps R`` spends R on.

Everything the sender emits shares R: the frame packets, the sound, the source frames and
the few other chunks (crops, the end). Two of them have a steady rate that the plan fixes
before the first frame, the third takes what they leave:

- **Frames**: the model's operating point (a dead-zone strength with its own prior,
  ``models/<name>/operating_points/``) with the lowest rate. The eval measured no
  quality change across the strengths the shipped model has priors for (LPIPS, NME and
  the expression metrics, docs/EVAL.md, rows ``facecodec:deadband=S``): a bit spent on
  finer values buys nothing there, so the cheapest point is the right one until a model
  uses finer values.
- **Sound**: Opus at half of what the frames leave, within [``AUDIO_MIN_KBPS``,
  ``AUDIO_SPEECH_KBPS``] (speech gains little above; a call without sound is no call, so
  the sound comes before the sources). Below Opus's floor, Codec 2 (format 2.4): the
  best of its 2400, 1600 and 1300 bit/s modes within half of what the frames leave
  (priced in 80-ms packets), else 1300, in the shortest packets whose framing fits: 40
  ms (lip sync: a packet waits for its last sample; 2.6 kbps for 1300 in short audio
  chunks, format 2.6), else 80 (2.0), else 120 (1.8). At 6 kbps with sound: 40 ms. On
  the call clip (``bench/speech.py``) Opus keeps STOI 0.87 at its 6 kbps, 0.73
  at 5 and 0.55 at 4, where Codec 2 keeps 0.80 in 3.0 kbps of stream (2400, 80-ms
  packets), 0.77 in 2.2 (1600) and 0.74 in 2.0 (1300; 1.8 in 120-ms packets, 2.6 in 40-ms
  ones); its 3200
  adds 0.02 for 0.8 kbps more.
- **Frame rate**: the one asked (15 by default) if the frames and the cheapest sound fit
  there, else half of it (a face at 7.5 fps, as SVT-AV1's best rung at these rates is);
  at half the rate a frame costs ``HALF_RATE_BITS`` times its bits (its deltas span two
  frames' motion), with an intra frame every ``THIN_INTRA_S`` instead of 2 s (the
  frames cost 2.44 kbps instead of 2.77 on the call clip). The frame rate comes
  before the sound's quality: at 10 kbps the face stays at 15 fps with Codec 2 rather
  than at 7.5 with Opus.
- **Sources**: the rest, measured and not predicted: the stream writer sends source parts
  whenever what was emitted so far leaves room under R (``FcsWriter(all_in_rate=...)``),
  so a frame packet larger than predicted (an intra frame, fast motion) delays the
  sources instead of breaking the budget. *More* sources are what move quality on a
  call, not better ones (measured in docs/codec.md, "budget"). So the plan sends as many as the
  rest delivers in ``SOURCE_FILL_S`` (at least three, at most what the receiver takes);
  at a thin budget the last ones arrive late, and a file drops those not started by its
  end. A file's length is known, so its plan fills ``SOURCE_FILL_SHARE`` of it instead
  (:meth:`BudgetPlan.sources_for`): a one-minute file at 8 kbps gets five sources where
  the first 30 s deliver three and the rest of the budget went unspent.

- **Base layer** (format 2.5, issue 20; opt-in: ``Encoder(kbps=R, base="auto")``):
  what is left once the frames and the sound are planned, less what three sources need
  in ``SOURCE_FILL_S``, goes to an SVT-AV1 picture of the face tube at 256 px in its
  constant-rate mode (low delay), which the receiver fuses with its animation; less
  than ``BASE_MIN_KBPS`` left, and no base layer is planned (a thinner one loses to
  the sources the same bits buy). Its quality condition for
  the fusion is the CRF that gives that rate on the val clips (:func:`base_crf`).

The first source is the exception: it goes out at once, small (160 px at low quality), so
that the first face is drawn within seconds; R is kept from there on.

A budget that cannot carry the frames and the sound at their cheapest is refused with the
smallest one that can (:class:`BudgetError`), rather than exceeded silently.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass

from facecodec.bitstream.chunks import AUDIO, AUDIO_ORIGIN, AUDIO_SHORT, chunk, varint
from facecodec.bitstream.container import codec2_frame
from facecodec.bitstream.limits import MAX_SOURCES
from facecodec.bitstream.prior import Prior
from facecodec.defaults import (
    AUDIO_MIN_KBPS,
    BUDGET_MAX_KBPS,
    BUDGET_MIN_KBPS,
    MIN_SOURCE_KBPS,
    SOURCES,
)
from facecodec.errors import InputError

AUDIO_SPEECH_KBPS = 12.0  # Opus speech is near transparent here; more goes to the sources
AUDIO_PACKET_S = 0.060  # facecodec.audio.FRAME_MS (not imported: that module loads PyAV)
CODEC2_PACKET_S = 0.040  # facecodec.audio.CODEC2_PACKET_MS: for lip sync
# Codec 2's packets, shortest first: the first whose framing fits the budget is used (a
# packet waits for its last sample, so the sound's delay grows with its length)
CODEC2_PACKETS_S = (CODEC2_PACKET_S, 0.080, 0.120)
CODEC2_MODE_PACKET_S = 0.080  # the packets a plan prices Codec 2's modes in
CODEC2_PLAN = (2400, 1600, 1300)  # Codec 2 modes a plan uses, best first (bench/speech.py)
# At half the frame rate the intra frames come every THIN_INTRA_S instead of 2 s (12 % of
# the frames' bits there: 369 against 325 bits/frame on the call clip): a call's receiver
# asks for recovery frames after a loss, so the periodic ones are a backstop that a thin
# budget spends sparingly.
THIN_INTRA_S = 6.0
# Coded bits per frame at half the frame rate (and THIN_INTRA_S) over those at the full
# one (2-s intra period): the shipped model on the call clip at dead zone 32, 253.6
# against 215.7 (`facecodec encode --fps 7.5 --intra-period 45` against `--fps 15`,
# `facecodec bitrate`'s payload, 2026-12-02; at a 2-s period 297.6, 1.38x).
HALF_RATE_BITS = 1.18
HEADROOM = 0.95  # frames and sound are predicted from means: plan them within 95 % of R
# A frame packet's bytes beyond its coded values: chunk kind, length, frame number,
# reference, CRC-16 and the range coder's last 32-bit word, about 7 bytes at one frame per
# packet (bitstream/report.py counts it per stream as "overhead").
FRAME_FRAMING_BITS = 56.0
SOURCE_BYTES = 3500  # a 256-px WebP q80 face with its values (call clip: 3.0-3.5 KB)
SOURCE_FILL_S = 30.0  # a call's plan: the sources the rest delivers in this long
SOURCE_FILL_SHARE = 0.8  # a file's: those the rest delivers in this share of its length


BASE_SIDE = 256  # the side of a planned base layer (the fusion's best layers: docs/enhancement.md)
# less than this left for a base layer: none is planned. On the call clip's first minute
# without sound (facecodec eval --calls, 2026-12-02) a budget of 12 kbps with a 4.3-kbps
# base scored LPIPS 0.155 where the same budget spent on 8 sources scored 0.141; at 20
# kbps an 11.9-kbps base 0.061 against 0.129
BASE_MIN_KBPS = 8.0
BASE_RESERVE_SOURCES = 3  # with a base layer, the sources the rest still delivers in 30 s
# the val clips' mean steady rate of a 256-px base layer at these CRFs (SVT-AV1, kbps;
# docs/enhancement.md, "Against SVT-AV1 on its ladder": fused minus the keypoint stream)
BASE_CRF_AT_KBPS = ((6.0, 63), (13.0, 56), (20.5, 48))


def base_crf(kbps: float) -> int:
    """The CRF whose 256-px base layer has a rate of ``kbps`` on the val clips (the
    fusion's quality condition for a layer coded at that rate), interpolated in log-rate
    between :data:`BASE_CRF_AT_KBPS`, held at its ends (the fusion was trained on CRF
    48-63)."""
    pts = BASE_CRF_AT_KBPS
    if kbps <= pts[0][0]:
        return pts[0][1]
    for (r0, q0), (r1, q1) in zip(pts, pts[1:], strict=False):
        if kbps <= r1:
            t = math.log(kbps / r0) / math.log(r1 / r0)
            return round(q0 + t * (q1 - q0))
    return pts[-1][1]


class BudgetError(InputError):
    """A budget below what the model's frames and the sound need at their cheapest."""


@dataclass(frozen=True)
class BudgetPlan:
    """How a budget is spent; rates in kbps.

    Attributes:
        kbps: the budget, all-in.
        deadband: the frames' dead-zone strength (its prior is the model's for it).
        frames_kbps: the frames' predicted rate at that strength (values + framing).
        audio_kbps: the sound's bitrate (Opus's, or Codec 2's mode / 1000), or None
            without sound.
        audio_all_kbps: the sound's predicted rate in the stream (codec + chunk framing).
        sources_kbps: what is left for the sources (after the first), as planned; the
            writer measures and gives them what is really left.
        n_sources: the source frames to send: as many as ``sources_kbps`` delivers in
            ``SOURCE_FILL_S``, at least three (or what the receiver takes, if fewer).
        max_sources: the most the receiver draws from.
        fps: the frame rate (the one asked, or half of it).
        intra_s: the time between intra frames the plan assumes (None: the default).
        audio_codec: ``"opus"`` or ``"codec2"``.
        audio_packet_ms: the sound's packets (Codec 2: 80 ms, or 120 when the budget
            cannot pay the framing of shorter ones; Opus: 60), None without sound.
        base_kbps: the base layer's rate (0: none), at ``BASE_SIDE`` px.
    """

    kbps: float
    deadband: float
    frames_kbps: float
    audio_kbps: float | None
    audio_all_kbps: float
    sources_kbps: float
    n_sources: int = SOURCES
    max_sources: int = MAX_SOURCES
    fps: float = 15.0
    audio_codec: str = "opus"
    intra_s: float | None = None
    audio_packet_ms: int | None = None
    base_kbps: float = 0.0

    def sources_for(self, seconds: float | None = None) -> int:
        """The source frames of a stream ``seconds`` long (None: a call, of unknown
        length): as many as ``sources_kbps`` delivers in ``SOURCE_FILL_SHARE`` of it (in
        ``SOURCE_FILL_S`` for a call), at least three, at most ``max_sources``."""
        fill = SOURCE_FILL_S if seconds is None else SOURCE_FILL_SHARE * max(0.0, seconds)
        delivered = int(self.sources_kbps * 1000 / 8 * fill / SOURCE_BYTES)
        return min(max(SOURCES, delivered), MAX_SOURCES, self.max_sources)

    def describe(self) -> str:
        sound = ("no sound" if self.audio_kbps is None else
                 f"sound {self.audio_all_kbps:.1f} ({self.sound_name()})")
        base = (f", base layer {self.base_kbps:.1f} ({BASE_SIDE} px, as CRF "
                f"{base_crf(self.base_kbps)})" if self.base_kbps else "")
        return (f"budget {self.kbps:g} kbps: frames ~{self.frames_kbps:.1f} at "
                f"{self.fps:g} fps (dead zone {self.deadband:g}), {sound}{base}, "
                f"{self.n_sources} sources in the rest (~{self.sources_kbps:.1f})")

    def sound_name(self) -> str:
        if self.audio_kbps is None:
            return "no sound"
        if self.audio_codec == "codec2":
            long = self.audio_packet_ms and self.audio_packet_ms != CODEC2_PACKET_S * 1000
            return (f"Codec 2 {round(self.audio_kbps * 1000)}"
                    + (f" in {self.audio_packet_ms}-ms packets" if long else ""))
        return f"Opus {self.audio_kbps:g}"


def frame_kbps(prior: Prior, fps: float, scale: float = 1.0) -> float:
    """A prior's predicted frame rate: its held-out cross-entropy per frame (what
    ``fit-priors`` measured on the val clips, at 15 fps) times ``scale`` plus the packet
    framing, at ``fps``."""
    bits = prior.info.get("val_bits_per_frame", {}).get("prior", {}).get("total")
    if not isinstance(bits, int | float):
        raise InputError(f"prior {prior.id} records no held-out rate (fitted without val "
                         "clips): a budget cannot be planned with it")
    return (float(bits) * scale + FRAME_FRAMING_BITS) * fps / 1000.0


def audio_all_kbps(opus_kbps: float, seconds: float = 3600.0) -> float:
    """Opus at ``opus_kbps`` as it goes into a stream: each 60 ms packet in an audio
    chunk (kind, length, start sample, CRC), framed as an hour into a call."""
    return _framed_kbps(max(1, round(opus_kbps * 1000 * AUDIO_PACKET_S / 8)), AUDIO_PACKET_S,
                        seconds)


def codec2_all_kbps(mode: int, seconds: float = 3600.0,
                    packet_s: float = CODEC2_PACKET_S) -> float:
    """Codec 2 at ``mode`` bit/s as it goes into a stream: ``packet_s`` packets of whole
    Codec 2 frames (:func:`~facecodec.bitstream.container.codec2_frame`) in short audio
    chunks (format 2.6: their starts are on the 20-ms grid)."""
    size, frame_s = codec2_frame(mode)
    return _framed_kbps(round(packet_s / frame_s) * size, packet_s, seconds, short=True)


def _framed_kbps(payload: int, packet_s: float, seconds: float, short: bool = False) -> float:
    start = b"\0\0" if short else varint(int(seconds * 48000) + AUDIO_ORIGIN)
    return len(chunk(AUDIO_SHORT if short else AUDIO, start + bytes(payload))) * 8 \
        / packet_s / 1000.0


def plan_budget(kbps: float, fps: float, points: Iterable[tuple[float, Prior]],
                audio: bool, max_sources: int = MAX_SOURCES, base: bool = False
                ) -> BudgetPlan:
    """The plan for ``kbps`` all-in; ``points``: (dead-zone strength, its prior) of the
    model's operating points; ``max_sources``: the most its receiver draws from; ``base``:
    plan a base layer in what is left (see the module docstring). Raises
    :class:`BudgetError` when ``kbps`` cannot carry the cheapest frames (at half of
    ``fps``, and the sound at Codec 2's cheapest) with room for the sources."""
    if not (isinstance(kbps, int | float) and not isinstance(kbps, bool)
            and BUDGET_MIN_KBPS <= kbps <= BUDGET_MAX_KBPS):
        raise InputError(f"kbps must be a number in {BUDGET_MIN_KBPS:g}..{BUDGET_MAX_KBPS:g}, "
                         f"got {kbps!r}")
    points = list(points)
    if not points:
        raise InputError("the model has no prior to plan a budget with")
    usable = HEADROOM * kbps - MIN_SOURCE_KBPS
    cheapest_sound = (codec2_all_kbps(CODEC2_PLAN[-1], packet_s=CODEC2_PACKETS_S[-1])
                      if audio else 0.0)
    for rate, scale in ((fps, 1.0), (fps / 2, HALF_RATE_BITS)):
        frames, deadband = min((frame_kbps(p, rate, scale), float(s)) for s, p in points)
        if frames + cheapest_sound <= usable:
            break
    else:
        # rounded up: the budget said must work
        need = math.ceil((frames + cheapest_sound + MIN_SOURCE_KBPS) / HEADROOM * 10) / 10
        alone = math.ceil((frames + MIN_SOURCE_KBPS) / HEADROOM * 10) / 10
        hint = (f"; without sound (--no-audio) {alone:.1f} kbps" if audio else "")
        raise BudgetError(f"a budget of {kbps:g} kbps cannot carry this model's frames "
                          f"(~{frames:.1f} kbps at its cheapest: {rate:g} fps, dead zone "
                          f"{deadband:g})"
                          + (f" and the sound (~{cheapest_sound:.1f} kbps at Codec 2 "
                             f"{CODEC2_PLAN[-1]})" if audio else "")
                          + f": it needs at least {need:.1f} kbps{hint}")
    codec, nominal, sound, packet_s = "opus", None, 0.0, AUDIO_PACKET_S
    if audio and frames + audio_all_kbps(AUDIO_MIN_KBPS) <= usable:
        nominal = AUDIO_MIN_KBPS
        target = min(AUDIO_SPEECH_KBPS, max(AUDIO_MIN_KBPS, (usable - frames) / 2))
        # the largest Opus rate (in 0.5 kbps steps) whose framed rate fits the target
        while nominal + 0.5 <= target and audio_all_kbps(nominal + 0.5) <= usable - frames:
            nominal += 0.5
        sound = audio_all_kbps(nominal)
    elif audio:  # below Opus's floor: as Opus, Codec 2's best within half of the rest
        # (priced in 80-ms packets), in the shortest packets that fit (lip sync)
        half = (usable - frames) / 2
        mode = next((m for m in CODEC2_PLAN
                     if codec2_all_kbps(m, packet_s=CODEC2_MODE_PACKET_S) <= half),
                    CODEC2_PLAN[-1])
        packet_s = next((p for p in CODEC2_PACKETS_S
                         if codec2_all_kbps(mode, packet_s=p) <= usable - frames),
                        CODEC2_PACKETS_S[-1])
        codec, nominal, sound = "codec2", mode / 1000.0, codec2_all_kbps(mode, packet_s=packet_s)
    rest = max(0.0, HEADROOM * kbps - frames - sound)
    base_kbps = 0.0
    if base:
        reserve = BASE_RESERVE_SOURCES * SOURCE_BYTES * 8 / SOURCE_FILL_S / 1000
        if rest - reserve >= BASE_MIN_KBPS:
            base_kbps = rest - reserve
            rest = reserve
    plan = BudgetPlan(float(kbps), deadband, frames, nominal, sound, rest,
                      max_sources=min(max_sources, MAX_SOURCES), fps=float(rate),
                      audio_codec=codec, intra_s=None if rate == fps else THIN_INTRA_S,
                      audio_packet_ms=round(packet_s * 1000) if audio else None,
                      base_kbps=base_kbps)
    return dataclasses.replace(plan, n_sources=plan.sources_for(None))
