"""Reuse the scores of an earlier ``facecodec eval`` run (``--reuse results.json``).

Scoring a split costs most of an eval's time and the classic codecs' rows do not change
when a model does, so a run may take a method's per-clip scores from an earlier
results.json instead of running it again. A method is reused only when nothing that
decides its scores differs: the same settings as the report records them (for a model:
its weights' hash, prior, sources, dead zone...), the same ``--max-frames``, and a score
for every clip and target of this run. The report names the methods it reused and the
commit that scored them.

Rows from before the expression metrics (eval/expression.py) are not reused: the method
runs again, so that every row of a report has them rather than a gap that reads as "not
measured" beside methods that were, and pooled blink recall counts the same clips for all.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields
from pathlib import Path

from facecodec.errors import InputError
from facecodec.eval.expression import ExpressionScore
from facecodec.eval.metrics import ClipScore
from facecodec.eval.report import jsonable

Key = tuple[str, float | None]  # (clip, target kbps)

# metrics JSON stores NaN as null; the averages are NaN-aware, so they must be NaN again
# (a row from before a metric existed lacks it: NaN too)
_FLOAT_METRICS = ("lpips", "psnr", "ms_ssim", "nme", "identity", "face_found",
                  "motion_ratio", "motion_error", "flicker", "eye_error", "mouth_open_error",
                  "mouth_width_error", "eye_corr", "mouth_open_corr", "mouth_width_corr")
EXPRESSION_FIELDS = tuple(f.name for f in fields(ExpressionScore))


def has_expression(row: dict) -> bool:
    """Whether an earlier row was scored with the expression metrics (else: run again)."""
    return all(k in row for k in EXPRESSION_FIELDS)


def load_previous(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: cannot read earlier eval results ({e})") from None
    if not isinstance(doc, dict) or not {"methods", "scores"} <= doc.keys():
        raise InputError(f"{path}: not a results.json of facecodec eval")
    return doc


def score_from_row(row: dict) -> ClipScore:
    """A results.json score row -> ClipScore (null metrics as NaN)."""
    names = {f.name for f in fields(ClipScore)}
    values = {k: v for k, v in row.items() if k in names}
    for k in _FLOAT_METRICS:
        if values.get(k) is None:
            values[k] = math.nan
    return ClipScore(**values)


def reusable(previous: dict, settings: Mapping[str, dict], targets: Mapping[str, Sequence],
             clips: Iterable[str], max_frames: int | None,
             identity: str | None = None) -> dict[str, dict[Key, ClipScore]]:
    """Scores of ``previous`` per method that can stand for a run of it now.

    ``settings[name]``: what this run's report records of the method (JSON-normalised
    here); ``targets[name]``: its operating points for this run's rates. ``identity``:
    how this run measures the identity distance (None: it cannot); rows scored without
    it, or otherwise, are not reused, so that no column mixes the two. Nor are rows
    without the expression metrics (module docstring).
    """
    if previous.get("max_frames") != max_frames:
        return {}
    if identity is not None and previous.get("identity") != identity:
        return {}
    clips = list(clips)
    by_method: dict[str, dict[Key, ClipScore]] = {}
    for row in filter(has_expression, previous["scores"]):
        key = row["clip"], row["target_kbps"]
        by_method.setdefault(row["method"], {})[key] = score_from_row(row)
    out = {}
    for name, now in settings.items():
        before = previous["methods"].get(name)
        if before is None or before != jsonable(now):
            continue
        rows = by_method.get(name, {})
        if all((c, t) in rows for c in clips for t in targets[name]):
            out[name] = {(c, t): rows[c, t] for c in clips for t in targets[name]}
    return out
