"""The One-Euro filter (Casiez, Roussel and Vogel, CHI 2012) for landmark tracks.

A landmark tracker jitters by a fraction of a pixel from frame to frame; rendered through
the generator, that jitter becomes a flickering face. A fixed low-pass filter would remove
it but also lag behind fast mouth and head motion. The One-Euro filter adapts its cut-off
to the speed of the signal: heavy smoothing when the point is still (jitter dominates),
little when it moves (lag would dominate).

The speed that opens the filter is that of each point (the norm over the last axis, so x,
y and z of a landmark are smoothed alike); ``scale`` expresses it in face sizes per
second, so the same parameters suit a face of 100 or of 600 pixels. ``min_cutoff`` and
``beta`` may be arrays (one value per point) to smooth some points more than others.
"""

from __future__ import annotations

import math

import numpy as np


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    """Smoothing factor of an exponential filter with the given cut-off (Hz) and step (s)."""
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """Speed-adaptive low-pass filter over arrays of any fixed shape.

    ``min_cutoff`` (Hz) sets the smoothing of a still point, ``beta`` how quickly the
    cut-off rises with speed (in ``scale`` units per second), ``d_cutoff`` the smoothing of
    the speed estimate itself.
    """

    def __init__(self, min_cutoff: float | np.ndarray = 1.0, beta: float | np.ndarray = 30.0,
                 d_cutoff: float = 4.0):
        if np.any(np.asarray(min_cutoff) <= 0) or d_cutoff <= 0 or np.any(np.asarray(beta) < 0):
            raise ValueError("min_cutoff and d_cutoff must be > 0 and beta >= 0")
        # d_cutoff: Casiez et al.'s 1 Hz suits 60+ Hz input; at 15 fps the speed estimate must
        # react within a frame or two, else the filter opens too late for a mouth opening.
        self.min_cutoff = min_cutoff
        self.beta = beta
        self.d_cutoff = d_cutoff
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    def reset(self) -> None:
        """Forget the past: the next sample is passed through unchanged."""
        self._x = self._dx = self._t = None

    def __call__(self, x: np.ndarray, t: float, scale: float = 1.0) -> np.ndarray:
        """Filter sample ``x`` taken at time ``t`` (seconds); returns a new array."""
        x = np.asarray(x, dtype=np.float64)
        if self._x is None or self._t is None or self._x.shape != x.shape:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t
            return x.copy()
        dt = t - self._t
        if dt <= 0:  # a repeated or out-of-order timestamp: nothing to integrate over
            return self._x.copy()
        dx = (x - self._x) / dt
        a_d = _alpha(self.d_cutoff, dt)
        self._dx = a_d * dx + (1.0 - a_d) * self._dx
        speed = np.linalg.norm(self._dx, axis=-1, keepdims=True) / max(scale, 1e-9)
        cutoff = self.min_cutoff + self.beta * speed
        a = _alpha(cutoff, dt)
        self._x = a * x + (1.0 - a) * self._x
        self._t = t
        return self._x.copy()
