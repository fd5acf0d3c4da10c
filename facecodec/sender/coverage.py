"""Closed-loop source choice (issue 17, item 3): sources chosen by what the receiver draws.

The sender has the receiver's model and knows every bit it sends, so it can draw a frame
exactly as the receiver will. The pose rule (:func:`facecodec.sender.select_sources`)
spreads the sources over head yaw, but a call changes in ways yaw does not see: a new
shot or framing, the light, glasses, a hand, a mouth wide open. Here the sender draws a
sample of the clip's frames (one per ``every`` frames) from the sources chosen so far and
adds, one at a time, the usable frame the receiver draws worst, until the set is full:
greedy farthest-point selection in the receiver's own error.

The error is the mean absolute difference of the drawn and the original face tube at 1/4
scale (a 64-px picture at 256): it sees a wrong shot, light or pose, and is blind to the
fine texture no source choice changes. It is averaged over three neighbouring samples
before the pick, so one odd frame (motion blur, a tracking slip) does not take a source
that a whole stretch of the call needs more.

This module holds the selection; drawing the frames is the caller's (``errors``), so the
sender does not depend on the receiver's code (:meth:`facecodec.Encoder.cover_sources`
wires the two).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_SAMPLES = 600
"""At most this many frames are drawn per round: a sample every ``every`` frames, thinned
on a long clip (an hour at 15 fps and one per second would be 3,600 renders a round)."""

ERROR_SCALE = 4
"""The error compares pictures averaged over ``ERROR_SCALE`` x ``ERROR_SCALE`` pixels."""


@dataclass(frozen=True)
class Coverage:
    """The sources (frame indices, in slot order) and the mean sampled error of the
    receiver's drawing with the first k of them, k = 1..len(sources)."""

    sources: list[int]
    errors: list[float]


def sample_frames(n_frames: int, every: int, limit: int = MAX_SAMPLES) -> np.ndarray:
    """Frame indices drawn to measure the receiver: every ``every``-th frame from the
    middle of the first interval, thinned evenly to at most ``limit``."""
    if n_frames < 1 or every < 1 or limit < 1:
        raise ValueError("n_frames, every and limit must be >= 1")
    idx = np.arange(min(every // 2, n_frames - 1), n_frames, every)
    if len(idx) > limit:
        idx = idx[np.linspace(0, len(idx) - 1, limit).round().astype(int)]
    return idx


def picture_error(drawn: np.ndarray, original: np.ndarray, scale: int = ERROR_SCALE
                  ) -> np.ndarray:
    """Mean absolute difference in [0, 1] of (B, S, S, 3) uint8 pictures averaged over
    ``scale`` x ``scale`` blocks: one number per picture."""
    if drawn.shape != original.shape:
        raise ValueError(f"pictures differ in shape: {drawn.shape} vs {original.shape}")
    b, h, w, c = drawn.shape
    h, w = h - h % scale, w - w % scale

    def pooled(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x[:, :h, :w], dtype=np.float32) / 255.0
        return x.reshape(b, h // scale, scale, w // scale, scale, c).mean(axis=(2, 4))

    return np.abs(pooled(drawn) - pooled(original)).mean(axis=(1, 2, 3))


def smoothed(errors: np.ndarray) -> np.ndarray:
    """Each sample's error averaged with its neighbours' (the ends with their one)."""
    e = np.asarray(errors, dtype=np.float64)
    if len(e) < 3:
        return e.copy()
    out = e.copy()
    out[1:-1] = (e[:-2] + e[1:-1] + e[2:]) / 3
    out[0], out[-1] = (e[0] + e[1]) / 2, (e[-1] + e[-2]) / 2
    return out


def cover(first: int, samples: Sequence[int], usable: Sequence[bool], n: int,
          errors: Callable[[list[int]], np.ndarray], min_gap: int = 0) -> Coverage:
    """Greedy closed-loop choice of ``n`` sources.

    Args:
        first: slot 0's frame (the frontal source of the pose rule: the paper's first
            source, and the one sent small at once).
        samples: the frame indices drawn each round (:func:`sample_frames`).
        usable: per sample, whether it may become a source (a face, eyes open, not a
            fade or a flash).
        n: sources wanted; fewer come back when the usable samples run out.
        errors: the receiver's error on every sample when it draws from the given
            sources (frame indices): one round of rendering.
        min_gap: a new source is at least this many frames from every chosen one
            (neighbours of a source are drawn well already; this only saves rounds).
    """
    samples = np.asarray(samples, dtype=np.int64)
    usable = np.asarray(usable, dtype=bool)
    if len(samples) != len(usable):
        raise ValueError("samples and usable differ in length")
    chosen = [int(first)]
    err = np.asarray(errors(chosen), dtype=np.float64)
    history = [float(err.mean())]
    while len(chosen) < n:
        score = smoothed(err)
        far = np.min(np.abs(samples[:, None] - np.asarray(chosen)[None]), axis=1) > min_gap
        score[~(usable & far)] = -np.inf
        pick = int(np.argmax(score))
        if not np.isfinite(score[pick]):
            break  # no usable frame left to add
        chosen.append(int(samples[pick]))
        err = np.asarray(errors(chosen), dtype=np.float64)  # (the last: for the report)
        history.append(float(err.mean()))
    return Coverage(chosen, history)


class LiveCoverage:
    """The closed loop of a live call: when the receiver needs a new source, and which.

    A call cannot wait for its end to choose, so the rule is causal. Every ``every``
    frames the sender draws the frame as the receiver will and calls :meth:`check` with
    the error (:func:`picture_error`). A source is due, from the last ``window`` checks
    since the previous one, when their mean error is above ``fill`` x the median of the
    call's checks so far while the set has free slots (the greedy fill of :func:`cover`,
    one window at a time), or above ``replace`` x that median once it is full (a change the
    sources do not cover: a new shot, the light, an occlusion; the higher bar keeps a full
    set from churning). The source is the usable checked frame of the window drawn worst.
    Nothing is due while an earlier source is still on its way (``busy``): its error
    would count against a picture the receiver does not have yet.
    """

    def __init__(self, every: int, window: int = 3, fill: float = 1.1, replace: float = 1.5,
                 min_checks: int = 5, history: int = 900):
        if every < 1 or window < 1 or min_checks < 1:
            raise ValueError("every, window and min_checks must be >= 1")
        self.every, self.window, self.min_checks = every, window, min_checks
        self.fill, self.replace = fill, replace
        self._errors: deque[float] = deque(maxlen=history)  # the call's typical error
        self._recent: list[tuple[float, Any, bool]] = []  # checks since the last source

    def due(self, index: int) -> bool:
        """Whether frame ``index`` is one to draw and check."""
        return index % self.every == self.every // 2

    def check(self, error: float, item: Any, usable: bool, full: bool, busy: bool = False
              ) -> Any | None:
        """Record a checked frame (``item``: whatever the caller needs to send it) and
        return the item to send as a source now, or None. ``full``: every source slot is
        taken (a new source replaces one)."""
        self._errors.append(float(error))
        self._recent.append((float(error), item, bool(usable)))
        del self._recent[:-self.window]  # (items may hold pictures: keep only the window)
        if busy or len(self._recent) < self.window or len(self._errors) < self.min_checks:
            return None
        recent = self._recent
        typical = float(np.median(self._errors))
        bar = (self.replace if full else self.fill) * typical
        if np.mean([e for e, _, _ in recent]) <= bar:
            return None
        candidates = [(e, it) for e, it, ok in recent if ok]
        if not candidates:
            return None
        self._recent.clear()
        return max(candidates, key=lambda c: c[0])[1]
