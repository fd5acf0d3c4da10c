"""Expression metrics: does the output blink, open its mouth and smile when the original does?

Landmark NME and LPIPS do not see a face that keeps its eyes open through a blink (issue
19: NME 0.017 on a clip whose output never blinks). These figures compare three
expression signals, measured by MediaPipe's face mesh on the output and on the original:

- **eye openness**: the lid gap (mean of three upper/lower lid pairs, both eyes),
- **mouth openness**: the inner-lip gap (three pairs),
- **mouth width**: the distance between the mouth corners (a smile widens it),

each divided by the same frame's outer-eye-corner distance (the NME normaliser), so the
signals are in face-size units and a face that is nearer or farther changes none of them.
A head turn shrinks all horizontal distances alike in the output and in the original, and
the two are compared frame by frame at the same pose.

Per clip: the mean absolute error of each signal, the Pearson correlation of each time
series with the original's (does it follow at all, whatever its offset), and **blink
recall**: of the frames where the original's eyes are closed (openness below half of its
own median over the clip), the share where the output's are closed too (below half of
the output's median). ``false_blinks`` counts output frames closed where the original's are
open. Errors and correlations leave out frames where either face is missing. The blink
frames are the original's alone, so that every method on a clip is judged on the same
blinks: an output frame without a face there is a miss (it shows no closed eyes), not a
frame left out (eval/metrics.py holds the last face found, as a receiver keeps showing the
last picture, so this happens only when the output never shows a face).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# MediaPipe face-mesh indices. Lids: upper / lower pairs across each eye (the six-point
# eye aspect ratio of Soukupova and Cech 2016 plus the middle pair), subject's right eye
# (image left) then left eye.
EYE_LIDS = ((160, 144), (159, 145), (158, 153), (385, 380), (386, 374), (387, 373))
INNER_LIPS = ((82, 87), (13, 14), (312, 317))
MOUTH_CORNERS = (61, 291)
OUTER_EYE_CORNERS = (33, 263)
CLOSED_RATIO = 0.5  # eyes "closed": openness below this share of the clip's median


def _gap(points: np.ndarray, pairs: tuple[tuple[int, int], ...]) -> np.ndarray:
    return np.mean([np.linalg.norm(points[:, a] - points[:, b], axis=-1) for a, b in pairs],
                   axis=0)


def expression_signals(points: np.ndarray) -> dict[str, np.ndarray]:
    """(T, >=468, 2) mesh points -> {"eye": (T,), "mouth_open": (T,), "mouth_width": (T,)}
    in outer-eye-corner distances; NaN where the face is missing (NaN points)."""
    pts = np.asarray(points, dtype=np.float64)
    a, b = OUTER_EYE_CORNERS
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.linalg.norm(pts[:, a] - pts[:, b], axis=-1)
        scale = np.where(scale > 0, scale, np.nan)
        left, right = MOUTH_CORNERS
        return {
            "eye": _gap(pts, EYE_LIDS) / scale,
            "mouth_open": _gap(pts, INNER_LIPS) / scale,
            "mouth_width": np.linalg.norm(pts[:, left] - pts[:, right], axis=-1) / scale,
        }


def closed_eyes(eye: np.ndarray) -> np.ndarray:
    """(T,) bool: eye openness below CLOSED_RATIO x the series' median (False where NaN)."""
    ok = ~np.isnan(eye)
    if not ok.any():
        return np.zeros(len(eye), dtype=bool)
    with np.errstate(invalid="ignore"):
        return ok & (eye < CLOSED_RATIO * np.median(eye[ok]))


def correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation over frames where both are finite; NaN for fewer than 3 frames
    or a constant series (a frozen output does not follow, but has no defined r). MediaPipe
    on a still video jitters slightly, so a held frame's r is defined: chance, the floor."""
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return math.nan  # tested exactly: a mean's rounding makes constant series "vary"
    xs, ys = x[ok] - x[ok].mean(), y[ok] - y[ok].mean()
    den = math.sqrt(float((xs * xs).sum()) * float((ys * ys).sum()))
    return float((xs * ys).sum() / den) if den > 0 else math.nan


@dataclass
class ExpressionScore:
    """Expression figures of one output against its original (module docstring)."""

    eye_error: float
    mouth_open_error: float
    mouth_width_error: float
    eye_corr: float
    mouth_open_corr: float
    mouth_width_corr: float
    blink_frames: int  # frames with the original's eyes closed
    blink_hits: int  # of those, frames with the output's eyes closed too
    false_blinks: int  # output closed, original open

    @property
    def blink_recall(self) -> float:
        return self.blink_hits / self.blink_frames if self.blink_frames else math.nan


def _mae(x: np.ndarray, y: np.ndarray) -> float:
    ok = np.isfinite(x) & np.isfinite(y)
    return float(np.abs(x[ok] - y[ok]).mean()) if ok.any() else math.nan


def compare_expressions(out_points: np.ndarray, ref_points: np.ndarray) -> ExpressionScore:
    """Score the output's mesh points against the original's, both (T, >=468, 2)."""
    out, ref = expression_signals(out_points), expression_signals(ref_points)
    closed_ref = closed_eyes(ref["eye"])  # the original's blinks, whatever the output shows
    closed_out = closed_eyes(out["eye"])  # False where the output has no face: a miss
    open_ref = np.isfinite(ref["eye"]) & ~closed_ref
    return ExpressionScore(
        eye_error=_mae(out["eye"], ref["eye"]),
        mouth_open_error=_mae(out["mouth_open"], ref["mouth_open"]),
        mouth_width_error=_mae(out["mouth_width"], ref["mouth_width"]),
        eye_corr=correlation(out["eye"], ref["eye"]),
        mouth_open_corr=correlation(out["mouth_open"], ref["mouth_open"]),
        mouth_width_corr=correlation(out["mouth_width"], ref["mouth_width"]),
        blink_frames=int(closed_ref.sum()),
        blink_hits=int((closed_ref & closed_out).sum()),
        false_blinks=int((closed_out & open_ref).sum()))
