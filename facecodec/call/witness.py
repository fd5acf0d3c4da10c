"""A lost frame packet noticed from the sound sent after it.

The receiver learns of a lost frame packet when the next one arrives: at 7.5 frames/s
(the budget's rate for 6 kbps with sound) that is 133 ms later, and the recovery frame
the sender then codes comes one more frame later, so one loss froze the picture for
0.52-0.65 s in a one-minute call at 5 % loss (docs/call.md). The sound's packets go on
the same data channel every 40 ms (80 or 120 on thinner budgets), and a link keeps the
order of what is sent on one path (a queue; a lost datagram is gone, it does not come
late). So a sound packet that was
sent after frame ``k`` proves that ``k``, if it has not arrived, was lost: the receiver
can ask for the recovery frame one sound packet after the loss instead of one frame.

When a sound packet was sent: not before its last sample was captured, ``seconds``
after its ``start`` on the stream's clock (:func:`sound_seconds`: its length, plus the
20 ms a Codec 2 packet is stamped early for the codec's own delay). Frame ``k`` goes out
when the sender has coded it, ``k / fps`` plus the encoder's time, at most ``margin_s``
after. The margin is learned: it starts at ``MIN_MARGIN_S`` and, whenever a frame
arrives after a sound packet that was sent later than its time plus the margin (the
path keeps their order, so the frame left later still), grows to that lateness plus
``MARGIN_SLACK_S`` (at most ``MAX_MARGIN_S``). Until 2026-12-03 it was a fixed 60 ms
(the encoder's p95 was ~37 ms on session 17's machine, 16 on session 24's) and the
stamp was not counted: the requests went out ~50 ms later than they could, and a loss
that the two chains did not cover froze the picture 0.53-0.55 s at 7.5 frames/s (three
frames not drawn) where 0.4 s is possible. A network that reorders within a flow, or a
sender stalled for longer than the margin, costs a request that was not needed: a
recovery frame, coded against an older frame, a few hundred bits.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from facecodec.bitstream.container import AUDIO_CLOCK, CODEC2_MODES, codec2_frame

MIN_MARGIN_S = 0.03  # a frame packet leaves at most this long after its frame's time ...
MARGIN_SLACK_S = 0.015  # ... or this much more than the latest seen (learned)
MAX_MARGIN_S = 0.08  # ... up to this: a stall of the sender does not blind the witness
OPUS_MIN_S = 0.02  # an Opus packet's duration is not read here: the shortest one
CODEC2_STAMP_S = 0.02  # facecodec.audio.CODEC2_DELAY (not imported: it loads PyAV)


def sound_seconds(info: dict, nbytes: int) -> float:
    """How long after its ``start`` the last sample of a sound packet of ``nbytes`` was
    captured, for the stream header's ``info``: a Codec 2 packet is whole frames of a
    known size, stamped :data:`CODEC2_STAMP_S` early; an Opus packet lasts at least 20
    ms."""
    audio = info.get("audio") if isinstance(info, dict) else None
    if isinstance(audio, dict) and audio.get("codec") == "codec2" \
            and audio.get("mode") in CODEC2_MODES:
        size, seconds = codec2_frame(audio["mode"])
        return nbytes // size * seconds + CODEC2_STAMP_S
    return OPUS_MIN_S


class SoundWitness:
    """Frame packets that a later sound packet proves lost."""

    KEEP = 256  # frames remembered behind the highest that arrived

    def __init__(self, fps: float, margin_s: float = MIN_MARGIN_S):
        self.fps = float(fps)
        self.margin_s = margin_s
        self._latest_sent = -math.inf  # the latest sound packet's sending bound heard
        self._highest = -1  # the highest frame that arrived (-1: none yet)
        self._arrived: set[int] = set()  # the frames that arrived, the last KEEP of them
        self._checked = -1  # frames up to this one are dealt with (arrived or reported)

    def frames(self, numbers: Iterable[int], learn: bool = True) -> None:
        """Frames that arrived (every frame of a packet); ``learn``: whether they left as
        soon as they were coded (not packed several to a message), so their lateness
        behind the sound heard before them may raise the margin."""
        for f in numbers:
            if learn and f not in self._arrived:
                late = self._latest_sent - f / self.fps  # it left after that sound packet
                if late + MARGIN_SLACK_S > self.margin_s:
                    self.margin_s = min(MAX_MARGIN_S, late + MARGIN_SLACK_S)
            self._arrived.add(f)
            self._highest = max(self._highest, f)
        if len(self._arrived) > 2 * self.KEEP:
            self._arrived = {f for f in self._arrived if f > self._highest - self.KEEP}

    def sound(self, start: int, seconds: float) -> tuple[int, int] | None:
        """A sound packet arrived, its first sample at ``start`` (48 kHz, stream time)
        and lasting ``seconds``: -> (the first frame it proves lost that was not reported
        before, the frame before it) when that frame before it arrived (a recovery frame
        is coded against it), else None. Nothing before the first frame packet (the
        frames before the first source go out together, late)."""
        sent = start / AUDIO_CLOCK + seconds  # not before its last sample
        self._latest_sent = max(self._latest_sent, sent)
        if self._highest < 0:
            return None
        last = math.floor((sent - self.margin_s) * self.fps)  # frames surely sent before
        lost = next((f for f in range(max(self._checked + 1, self._highest - self.KEEP),
                                      last + 1) if f not in self._arrived), None)
        self._checked = max(self._checked, last if lost is not None
                            else min(last, self._highest))
        if lost is None or lost - 1 not in self._arrived:
            return None  # nothing lost, or its reference too: the decoder's request serves
        return lost, lost - 1
