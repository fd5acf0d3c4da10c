"""Source-frame selection: which frames the receiver gets as pictures.

The generator animates source frames; whatever side of the head they do not show must be
invented. Oquab et al. 2022 (section 3.3, "Frame selection setup"): "we select one source
frame having the smallest yaw angle (frontal view) over the video, and ensure that eyes
are open. [...] we select two additional frames where the yaw angles are the extrema
reached in the video." :func:`select_sources` does that for a recorded clip.

A live call cannot look ahead, so :class:`SourcePolicy` adds a source when the head
reaches a yaw not covered yet: beyond the covered yaw range by more than ``margin``. It
waits for the turn to stop (the most turned frame is the most useful) before adding it,
and once the set is full it replaces the most redundant source.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from facecodec.defaults import SOURCES
from facecodec.errors import InputError


def eyes_open_mask(eyes_open: np.ndarray, valid: np.ndarray, ratio: float = 0.75
                   ) -> np.ndarray:
    """Frames whose eye openness (``pose.eye_openness``) is at least ``ratio`` of the
    clip's median: eyes are open most of the time, so the median is this person's open
    eyes, whatever their shape; blinks and squints fall below."""
    eyes_open = np.asarray(eyes_open, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool)
    if not valid.any():
        return np.zeros_like(valid)
    return valid & (eyes_open >= ratio * np.median(eyes_open[valid]))


MIN_CONTRAST = 0.5
"""A source candidate's luminance contrast is at least this share of the clip's median."""

MAX_BRIGHTNESS_SHIFT = 0.35
"""... and its mean luminance within this share of the clip's median."""


def picture_stats(tube: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of the luminance (RGB average) over the central half of
    a face tube (H, W, 3): the face, whatever the background does."""
    h, w = tube.shape[:2]
    y = np.asarray(tube[h // 4:h - h // 4, w // 4:w - w // 4], dtype=np.float32).mean(-1)
    return float(y.mean()), float(y.std())


def steady_mask(stats: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Frames whose picture looks like most of the clip's: contrast and brightness
    (``stats`` (T, 2) of :func:`picture_stats`) near the clip's medians over ``valid``
    frames. A fade or a cut through white or black, a flash, a dark or washed-out moment
    fail it: a source taken there would put that look on every frame the receiver draws
    (a faded frame of an edited interview was the most frontal one of its 97 s)."""
    stats = np.asarray(stats, dtype=np.float64).reshape(-1, 2)
    valid = np.asarray(valid, dtype=bool)
    if not valid.any():
        return valid.copy()
    mean, std = np.median(stats[valid], axis=0)
    return valid & (stats[:, 1] >= MIN_CONTRAST * std) & \
        (np.abs(stats[:, 0] - mean) <= MAX_BRIGHTNESS_SHIFT * mean)


def source_candidates(valid: np.ndarray, eyes_open: np.ndarray, stats: np.ndarray | None = None,
                      open_ratio: float = 0.75) -> np.ndarray:
    """The frames a source may be taken from: a face with open eyes, and with ``stats``
    (:func:`picture_stats`) a steady picture; each condition is dropped when no frame
    meets it (a clip of closed eyes still gets sources)."""
    valid = np.asarray(valid, dtype=bool)
    if stats is not None:
        steady = steady_mask(stats, valid)
        valid = steady if steady.any() else valid
    opened = eyes_open_mask(eyes_open, valid, open_ratio)
    return opened if opened.any() else valid


MIN_YAW_GAP = 0.1
"""Radians: a yaw extreme nearer than this to a chosen source adds no pose of its own..."""

WIDE_YAW = 0.3
"""... on a clip whose yaw spans at least this (radians). Over a narrower span the yaws are
tracker noise and head sway: which frame is chosen changes LPIPS by chance (on the val
clips, either way by up to 0.06), so the paper's rule stays."""


def select_sources(yaw: np.ndarray, valid: np.ndarray, eyes_open: np.ndarray, n: int = SOURCES,
                   open_ratio: float = 0.75, stats: np.ndarray | None = None) -> list[int]:
    """Frame indices of ``n`` source frames: first the most frontal frame with open eyes,
    then the frames at the yaw extremes (max, then min); with ``n`` > 3 the others each at
    the yaw farthest from every source chosen so far (the middle of the widest gap). Each
    is taken among frames with open eyes when there are any (nearest yaw to its target),
    else among all ``valid`` frames. Fewer than ``n`` indices come back when the clip has
    fewer distinct valid frames.

    On a clip whose yaw spans ``WIDE_YAW`` or more, an extreme within ``MIN_YAW_GAP`` of a
    source already chosen is not taken for itself (its slot goes to the yaw farthest from
    the chosen ones): a head turned to one side the whole clip has its most frontal frame
    at one extreme, and the paper's rule would send that pose twice (two adjacent frames
    of the 97-s call clip, whose yaw stays in -0.87..-0.28).

    With ``stats`` (:func:`picture_stats` of every frame), frames that fail
    :func:`steady_mask` are left out, unless no frame passes it.

    To select within one tube segment, pass ``valid & (segment == s)``.
    """
    if n < 1:
        raise ValueError("n must be >= 1")
    yaw = np.asarray(yaw, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool)
    if not valid.any():
        raise InputError("no face found in any frame: no source frame to select")
    if stats is not None:
        steady = steady_mask(stats, valid)
        valid = steady if steady.any() else valid
    pool = source_candidates(valid, eyes_open, None, open_ratio)

    def nearest(target: float, taken: list[int]) -> int | None:
        cost = np.abs(yaw - target)
        cost[~pool] = np.inf
        cost[taken] = np.inf
        if not np.isfinite(cost).any():  # open-eyed frames used up: fall back to valid ones
            cost = np.abs(yaw - target)
            cost[~valid] = np.inf
            cost[taken] = np.inf
        i = int(np.argmin(cost))
        return i if np.isfinite(cost[i]) else None

    lo, hi = float(yaw[valid].min()), float(yaw[valid].max())
    extremes = [hi, lo] if n >= 3 else [hi if abs(hi) >= abs(lo) else lo]
    chosen: list[int] = []
    if hi - lo < WIDE_YAW:  # the paper's rule
        targets = [0.0] + extremes[: n - 1]
        targets += list(np.linspace(hi, lo, n - 1)[1:-1]) if n > 3 else []
    else:
        targets = [0.0]
    while len(chosen) < n:
        if targets:
            target = targets.pop(0)
        else:
            covered = yaw[chosen]
            extremes = [e for e in extremes if np.abs(covered - e).min() >= MIN_YAW_GAP]
            if extremes:
                target = extremes.pop(0)
            else:  # the yaw in [lo, hi] farthest from those covered
                covered = np.sort(covered)
                ends = np.concatenate([[hi, lo], (covered[1:] + covered[:-1]) / 2])
                far = np.abs(ends[:, None] - covered[None]).min(1)
                target = float(ends[np.argmax(far)])
        i = nearest(target, chosen)
        if i is None:
            break
        chosen.append(i)
    return chosen


@dataclass(frozen=True, slots=True)
class SourceUpdate:
    """A source frame to send: put ``record``'s picture in source slot ``slot`` (slot 0 is
    the frontal frame). ``replaced`` says the slot held an earlier frame (the set was
    full), which the receiver must drop."""

    record: Any
    slot: int
    replaced: bool


class SourcePolicy:
    """Live source-frame policy: call :meth:`update` with every frame record (anything
    with ``valid``, ``yaw``, ``eyes_open`` and ``new_box`` attributes); it returns a
    :class:`SourceUpdate` when a frame should become a source, else None.

    - The first source (slot 0) is the first valid frame with open eyes and
      ``|yaw| <= frontal``, or, if none comes within ``max_wait`` frames, the most frontal
      one seen by then. It is never replaced (the paper's frontal source).
    - Then, when the yaw goes beyond the range covered by the sources by more than
      ``margin``, the most turned frame of that excursion is added once the head turns
      back by ``settle`` or after ``max_wait`` frames.
    - With ``max_sources`` taken, a new one replaces the most redundant non-frontal source
      (the one nearest in yaw to another source): a turn made in two steps does not use up
      the set before the other side has a source.
    - A frame with ``new_box`` changes nothing: a source is a picture of the person with
      its values in its own tube's coordinates, and every tube puts the head at the same
      place, so sources from earlier boxes stay good (the offline choice has always
      mixed boxes; docs/sender.md, "Face tube").

    "Open eyes" is ``eyes_open >= open_ratio *`` the median openness of the last
    ``history`` valid frames, and at least ``min_open`` (a blink measures below 0.02).
    """

    def __init__(self, max_sources: int = SOURCES, margin: float = 0.15, frontal: float = 0.15,
                 settle: float = 0.03, max_wait: int = 15, open_ratio: float = 0.75,
                 min_open: float = 0.02, history: int = 150):
        if max_sources < 1:
            raise ValueError("max_sources must be >= 1")
        self.max_sources = max_sources
        self.margin, self.frontal, self.settle = margin, frontal, settle
        self.max_wait, self.open_ratio, self.min_open = max_wait, open_ratio, min_open
        self._openness: deque[float] = deque(maxlen=history)
        self.yaws: list[float] = []  # yaw of the source in each slot
        self._candidate: Any = None
        self._waited = 0

    def _eyes_open(self, record: Any) -> bool:
        self._openness.append(float(record.eyes_open))
        typical = float(np.median(self._openness))
        return record.eyes_open >= max(self.min_open, self.open_ratio * typical)

    def _slot_for(self, yaw: float) -> tuple[int, bool]:
        if len(self.yaws) < self.max_sources:
            return len(self.yaws), False
        if self.max_sources == 1:  # only the frontal slot: nothing to replace
            return -1, False
        ys = self.yaws + [yaw]

        def redundancy(i: int) -> tuple[float, float]:
            gap = min(abs(ys[i] - ys[j]) for j in range(len(ys)) if j != i)
            return gap, abs(ys[i])  # ties: keep the more turned one

        return min(range(1, len(self.yaws)), key=redundancy), True

    def _emit(self) -> SourceUpdate | None:
        chosen, self._candidate, self._waited = self._candidate, None, 0
        slot, replaced = self._slot_for(float(chosen.yaw))
        if slot < 0:
            return None
        if replaced:
            self.yaws[slot] = float(chosen.yaw)
        else:
            self.yaws.append(float(chosen.yaw))
        return SourceUpdate(chosen, slot, replaced)

    def update(self, record: Any) -> SourceUpdate | None:
        if self._candidate is not None:
            self._waited += 1
        usable = bool(record.valid) and self._eyes_open(record)
        yaw = float(record.yaw)
        if not self.yaws:  # waiting for the frontal source
            if usable and (self._candidate is None or abs(yaw) < abs(self._candidate.yaw)):
                self._candidate = record
            if self._candidate is not None and (abs(self._candidate.yaw) <= self.frontal
                                                or self._waited >= self.max_wait):
                return self._emit()
            return None
        if self.max_sources == 1:
            return None
        lo, hi = min(self.yaws), max(self.yaws)
        cand = self._candidate
        if usable and (yaw > hi + self.margin or yaw < lo - self.margin):
            # keep the most turned frame of this excursion (same side as the candidate)
            if cand is None or (yaw > hi and yaw > cand.yaw) or (yaw < lo and yaw < cand.yaw):
                self._candidate = cand = record
        if cand is None:
            return None
        turned_back = abs(yaw - cand.yaw) >= self.settle and (
            (cand.yaw > hi and yaw < cand.yaw) or (cand.yaw < lo and yaw > cand.yaw))
        if turned_back or self._waited >= self.max_wait or not record.valid:
            return self._emit()
        return None
