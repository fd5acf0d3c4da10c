"""The receiver's reading of the link, and what it asks the sender to do about it.

At a few kilobits per second the data channels' framing costs more than the stream: each
message carries ~57 bytes of SCTP, DTLS and UDP/IP headers and brings a SACK back, so one
frame per message (15 a second) is ~14 kbps on the wire for a 6-kbps stream
(docs/call.md). On a link thinner than that, the queue in front of it grows until it
drops datagrams, and every dropped frame message is a concealed frame. Packing ``k``
frames per message divides that framing by ``k`` at ``(k - 1) / fps`` more delay, a good
trade only when the link is the bottleneck. So the receiver decides:

- Each frame message's *transit*: its arrival time less the stream time of the last
  frame it holds (the sender sends a message as soon as its last frame is coded, in real
  time); its *queueing delay*: the transit less the smallest transit of the last
  ``base_window_s`` (the link's fixed delay and the clocks' offset cancel out; a window
  longer than a congested spell, or the queue would become the base).
- The median queueing delay of the last ``samples`` messages (jitter averages out) above
  ``high_s`` means a queue is building. That needs a clear moment to measure the base
  from; a link too thin from the call's first second (the sources and the first frames
  queue at once) never shows one, and its full queue drops datagrams instead: so a
  share of the last ``loss_window`` frames missing above ``loss_high`` says the same
  (random loss of a few percent almost never reaches 25 % of 30 frames: a binomial tail
  of ~1e-4 at 5 %). The window is counted in frames, not seconds: a 2-s window held 15
  frames at the 7.5 frames/s of a 6-kbps call with sound, whose 25 % (4 frames) random
  loss of 5 % reaches in ~0.5 % of windows, and one call at 5 % loss in three was
  packed for nothing (added delay p95 467 ms instead of ~110, 2026-12-03).
- Either: ask for one more frame per message (at most ``max_frames``), then wait
  ``settle_s`` for it to act before asking again. The queue below ``low_s`` and fewer
  than ``loss_low`` of the frames missing for ``calm_s``: one frame fewer (``loss_low``
  10 %: 3 of 30 frames, which random loss of 5 % exceeds in ~6 % of windows, so a packed
  call on a lossy but uncongested link gets its frames back within seconds).

The verdict also carries the receiver's estimate of what the link delivers (the frame
messages' bytes over the last ``rate_window_s``) for the report. GCC (WebRTC's congestion
control) reads the same signal, the one-way delay's trend; this is its simplest form,
made for one decision.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    """A change the receiver asks for: ``frames`` per message from now on."""

    frames: int
    queue_s: float  # the median queueing delay that decided it
    kbps: float  # the frame messages' payload rate, as received (rate_window_s)


class CongestionMonitor:
    """Feed it every frame message as it arrives (:meth:`arrived`); it returns a
    :class:`Verdict` when the sender should pack more or fewer frames per message."""

    def __init__(self, fps: float, base_window_s: float = 30.0, rate_window_s: float = 5.0,
                 samples: int = 5,
                 high_s: float = 0.25, low_s: float = 0.08, settle_s: float = 2.0,
                 calm_s: float = 5.0, max_frames: int = 3, loss_window: int = 30,
                 loss_high: float = 0.25, loss_low: float = 0.1):
        if not (fps > 0 and 0 <= low_s < high_s and max_frames >= 1 and samples >= 1
                and loss_window >= 1):
            raise ValueError("CongestionMonitor: fps > 0, 0 <= low_s < high_s, "
                             "max_frames >= 1, samples >= 1 and loss_window >= 1")
        self.fps = float(fps)
        self.base_window_s, self.rate_window_s = float(base_window_s), float(rate_window_s)
        self.high_s, self.low_s = float(high_s), float(low_s)
        self.settle_s, self.calm_s = float(settle_s), float(calm_s)
        self.max_frames = int(max_frames)
        self.frames = 1  # what the sender was last asked for
        self._transits: deque[tuple[float, float]] = deque()  # (arrival, transit)
        self._recent: deque[float] = deque(maxlen=samples)  # queueing delays
        self._bytes: deque[tuple[float, int]] = deque()
        self._changed = -float("inf")  # when the last verdict was given
        self._calm_since: float | None = None
        self.loss_high, self.loss_low = float(loss_high), float(loss_low)
        self._window = int(loss_window)  # frames
        self._seen: set[int] = set()  # frame numbers received (pruned to the window)
        self._newest = -1

    def kbps(self) -> float:
        """The frame messages' payload rate over the last ``rate_window_s``, as received."""
        if len(self._bytes) < 2:
            return 0.0
        span = max(self._bytes[-1][0] - self._bytes[0][0], 1e-3)
        return sum(n for _, n in self._bytes) * 8 / span / 1000

    def missing(self) -> float | None:
        """The share of the last ``loss_window`` frames not received (None until the call
        is that long)."""
        if self._newest + 1 < self._window:
            return None
        start = self._newest - self._window + 1
        return 1.0 - sum(1 for f in self._seen if f >= start) / self._window

    def arrived(self, last_frame: int, now: float, nbytes: int,
                frames: list[int] | None = None) -> Verdict | None:
        """A frame message whose last frame is ``last_frame`` arrived at ``now`` (seconds,
        the receiver's clock) with ``nbytes``; ``frames``: every frame number it holds
        (default: ``last_frame`` alone)."""
        for f in frames or [last_frame]:
            self._seen.add(int(f))
            self._newest = max(self._newest, int(f))
        if len(self._seen) > 4 * self._window:  # forget what left the window
            self._seen = {f for f in self._seen if f > self._newest - self._window}
        transit = now - last_frame / self.fps
        self._transits.append((now, transit))
        self._bytes.append((now, nbytes))
        while self._transits[0][0] < now - self.base_window_s:
            self._transits.popleft()
        while self._bytes[0][0] < now - self.rate_window_s:
            self._bytes.popleft()
        base = min(t for _, t in self._transits)
        self._recent.append(transit - base)
        queue = sorted(self._recent)[len(self._recent) // 2]
        lost = self.missing()
        if queue < self.low_s and (lost is None or lost < self.loss_low):
            self._calm_since = now if self._calm_since is None else self._calm_since
        else:
            self._calm_since = None
        if now - self._changed < self.settle_s:
            return None
        frames = self.frames
        congested = queue > self.high_s or (lost is not None and lost > self.loss_high)
        if congested and frames < self.max_frames:
            frames += 1
        elif (frames > 1 and self._calm_since is not None
              and now - self._calm_since >= self.calm_s):
            frames -= 1
            self._calm_since = now  # one step per calm spell
        if frames == self.frames:
            return None
        self.frames, self._changed = frames, now
        return Verdict(frames, queue, self.kbps())
