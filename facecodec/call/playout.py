"""The player of a call with sound: when the sound plays, and how long a picture waits for it.

The sound must play without gaps, so it plays late enough that its packets have arrived:
its playout delay ``L`` (from a sample's capture to its playing) covers the
``on_time`` percentile of the sound packets' own delays over the last ``window_s``, and is
never earlier than the pictures' median delay (the sound no earlier than its picture). It
is re-set every ``update_s``; a packet that comes after its time moves ``L`` up to it at
once (a gap, then the sound plays on from it, as a jitter buffer stretches).

A picture drawn more than ``lead_s`` ahead of its sound is held until it is ``lead_s``
ahead (lip sync bought with delay), for at most ``MAX_HOLD_S``; one drawn later is shown
at once (a picture is never held back behind the sound: that would only add delay).

Delays are measured from any origin both streams share: the report uses the capture
clock (``t0 + index / fps``, ``t0 + start / 48000``), the receiver its own clock less the
stream time (the origin, the sender's clock offset and the link's fixed delay cancel out).
Used by the receiver (facecodec/call/peer.py) and the report (facecodec/call/report.py).
"""

from __future__ import annotations

import bisect
import math

AV_WINDOW_S = 2.0  # the playout delay follows the last 2 s of pictures and sound
AUDIO_ON_TIME = 95  # ... and covers this percentile of the sound packets' delays
# a picture is held until at most this far ahead of its sound: 20 ms inside issue 18's
# 80-ms target, because holding to 80 left the reported |offset| p95 at 80-88 ms (the
# screen thread wakes late, and L stretches after a picture was held for the old L)
AV_LEAD_S = 0.060
MAX_HOLD_S = 0.25  # ... and never longer than this (a player does not stop the picture)
UPDATE_S = 1.0


class Playout:
    def __init__(self, window_s: float = AV_WINDOW_S, on_time: float = AUDIO_ON_TIME,
                 lead_s: float = AV_LEAD_S, update_s: float = UPDATE_S):
        self.window_s, self.on_time, self.lead_s, self.update_s = (
            window_s, on_time, lead_s, update_s)
        self.level: float | None = None  # L; None until the first picture
        self.levels: list[float] = []  # L at every re-set and stretch
        self._pictures: list[tuple[float, float]] = []  # (when drawn, delay)
        self._sound: list[tuple[float, float]] = []  # (when arrived, delay)
        self._next = -math.inf
        self.late = 0  # sound packets that came after their time
        self.played = 0  # sound packets from the first picture on

    def _update(self, t: float) -> None:
        if t < self._next:
            return
        self._next = t + self.update_s
        for events in (self._pictures, self._sound):  # a long call: keep the window only
            if len(events) > 4096:
                del events[: bisect.bisect_right(events, (t - self.window_s, math.inf))]
        pictures = _recent(self._pictures, t, self.window_s)
        level = pictures[len(pictures) // 2] if pictures else self.level
        heard = _recent(self._sound, t, self.window_s)
        if heard:
            k = min(len(heard) - 1, max(0, math.ceil(self.on_time / 100 * len(heard)) - 1))
            level = heard[k] if level is None else max(level, heard[k])
        self._set(level)

    def _set(self, level: float | None) -> None:
        if level is not None:
            self.levels.append(level)
        self.level = level

    def picture(self, t: float, delay: float) -> float:
        """A picture drawn at ``t``, ``delay`` after its capture: -> how long to hold it
        before showing it (0: at once)."""
        self._pictures.append((t, delay))
        if self.level is None:
            self._next = -math.inf  # the first picture sets L
        self._update(t)
        return min(MAX_HOLD_S, max(0.0, self.level - self.lead_s - delay))

    def sound(self, t: float, delay: float) -> bool:
        """A sound packet arrived at ``t``, ``delay`` after its first sample's capture:
        -> whether it came after its playing time (a gap). Before the first picture
        nothing plays (False)."""
        self._sound.append((t, delay))
        if self.level is None:
            return False
        self._update(t)
        self.played += 1
        if delay > self.level:
            self.late += 1
            self._set(delay)
            return True
        return False


def _recent(events: list[tuple[float, float]], t: float, window: float) -> list[float]:
    """The delays of ``events`` (in time order) within ``window`` before ``t``, sorted."""
    lo = bisect.bisect_right(events, (t - window, math.inf))
    return sorted(d for _, d in events[lo:])
