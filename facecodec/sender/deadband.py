"""A dead zone on the learned values the sender sends: the codec's rate knob.

The sender network's keypoints, Jacobians and expression codes change a little at every
frame even when the face hardly moves. Coded as deltas of 12- to 16-bit indices (Oquab et
al. 2022, section 4.3), those small changes cost most of a frame's bits. With a dead zone,
a value is sent again only once it has moved more than a threshold away from the value
last sent (hysteresis per value); until then the receiver keeps the previous value, a
zero delta that the learned prior codes in a fraction of a bit. Unlike a low-pass filter
it adds no lag to a real movement, and the error it leaves is bounded by the threshold.

The supervised landmarks are not touched: the tracker smooths them
(facecodec/sender/smoothing.py) and they are coded on a fixed 8-bit grid.

The default strength is the smallest of those with a fitted prior whose steady rate on
the val clips fits the per-frame bit budget of Oquab et al. 2022 (Sup+Unsup+Expr). It was
chosen on rate alone because the shipped generator barely uses its learned values
(quality does not move with the strength); a model that uses them needs the strength
chosen again on quality (``facecodec eval -m "facecodec:deadband=S"``: the encoder codes
with the model's prior fitted at S, ``models/<name>/operating_points/``). The measured
rates and qualities per strength: docs/codec.md (``deadband``) and docs/EVAL.md.
"""

from __future__ import annotations

import numpy as np

UNIT_THRESHOLDS = {"unsup": 0.002, "jac": 0.005, "expr": 0.01}
"""Thresholds at strength 1, in each stream's units: keypoints in [-1, 1] (0.002 is a
quarter of a pixel at 256), Jacobian entries (identity = 1), expression codes in [-1, 1]."""

DEFAULT_STRENGTH = 16.0
"""The encoder's default (``--deadband``); 0 turns the dead zone off. A model's
``prior.json`` is fitted on streams made with the same strength (``fit-priors --deadband``)."""


class Deadband:
    """Per-value hysteresis on a frame's learned values, in frame order."""

    def __init__(self, strength: float = DEFAULT_STRENGTH,
                 unit: dict[str, float] | None = None):
        if strength < 0:
            raise ValueError(f"dead-zone strength must be >= 0, got {strength}")
        self.thresholds = {k: v * strength for k, v in (unit or UNIT_THRESHOLDS).items()}
        self.strength = strength
        self._sent: dict[str, np.ndarray] = {}

    def reset(self) -> None:
        """A new stream: the next frame's values pass unchanged."""
        self._sent.clear()

    def __call__(self, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``values`` of the next frame -> the values to send (a new dict)."""
        if self.strength == 0:
            return dict(values)
        out = dict(values)
        for name, thr in self.thresholds.items():
            if name not in values:
                continue
            x = np.asarray(values[name], dtype=np.float64)
            last = self._sent.get(name)
            if last is not None and last.shape == x.shape:
                x = np.where(np.abs(x - last) > thr, x, last)
            self._sent[name] = x
            out[name] = x.copy()
        return out

    def stream(self, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """A whole clip at once: {name: (T, ...)} -> the same, as sent frame by frame."""
        self.reset()
        n = len(next(iter(values.values())))
        frames = [self({k: v[t] for k, v in values.items()}) for t in range(n)]
        self.reset()
        return {k: np.stack([f[k] for f in frames]) for k in values}
