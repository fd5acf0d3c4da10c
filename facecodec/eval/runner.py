"""Run methods over clips: clips x methods x operating points -> :class:`ClipScore` rows.

Clips are loaded one at a time (a split's tubes do not all fit in memory); the original's
landmarks are tracked once per clip, and only if a method is scored on it (not reused). A
few frames of every output of the most rotation-heavy clip are kept for the contact sheet.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from tqdm import tqdm

from facecodec.errors import InputError
from facecodec.eval.base import EvalClip, Method
from facecodec.eval.clips import ClipRef
from facecodec.eval.identity import FaceIdentity
from facecodec.eval.metrics import LPIPS, ClipScore, score, track_landmarks

SHEET_ROWS = 6


@dataclass
class SheetFrames:
    """Frames for the contact sheet of one clip: ``frames[label]`` (rows, H, W, 3)."""

    clip: str = ""
    yaw_range: float = -1.0
    indices: list[int] = field(default_factory=list)
    frames: dict[str, np.ndarray] = field(default_factory=dict)
    kbps: dict[str, float] = field(default_factory=dict)  # label -> all-in kbps
    columns: list[str] = field(default_factory=list)  # what the sheet shows (report.py)
    shown_kbps: float | None = None  # the rate classic codecs are shown at


def sheet_indices(clip: EvalClip, rows: int = SHEET_ROWS) -> list[int]:
    """The most turned frames (min and max yaw) and evenly spaced ones, in time order."""
    t = len(clip.frames)
    picks = set(np.linspace(0, t - 1, max(rows - 2, 2)).round().astype(int).tolist())
    yaw = clip.meta.get("yaw")
    if yaw is not None and len(yaw) == t:
        picks |= {int(np.argmin(yaw)), int(np.argmax(yaw))}
    return sorted(picks)[:rows] if len(picks) > rows else sorted(picks)


@dataclass
class EvalRun:
    scores: list[ClipScore] = field(default_factory=list)
    sheet: SheetFrames = field(default_factory=SheetFrames)
    clips: list[dict] = field(default_factory=list)  # name, frames, seconds, origin, yaw
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (clip, reason)


def evaluate(refs: Sequence[ClipRef], methods: Sequence[Method], rates: Sequence[float],
             max_frames: int | None = None, progress: bool = True,
             sheet_clip: str | None = None,
             log: Callable[[str], None] | None = None,
             reused: Mapping[str, Mapping[tuple[str, float | None], ClipScore]] | None = None,
             sheet: bool = True, identity: FaceIdentity | None = None,
             on_score: Callable[[ClipScore], None] | None = None) -> EvalRun:
    """Score every method on every clip. ``sheet_clip``: the clip of the contact sheet
    (default: the largest yaw range seen). ``reused[method][clip, target]``: scores of an
    earlier run (eval/reuse.py) that stand for running ``method``; it then runs only on
    the contact sheet's clip, for its frames (``sheet=False``: no sheet frames are kept).
    ``identity``: the face descriptor network of the identity distance (None: NaN).
    ``on_score``: called with each score made (not reused) as soon as it is made."""
    points = {m.name: m.operating_points(rates) for m in methods}
    total = len(refs) * sum(len(p) for p in points.values())
    run = EvalRun()
    lpips = LPIPS()
    with tqdm(total=total, unit="run", disable=not progress, dynamic_ncols=True) as bar:
        for ref in refs:
            bar.set_postfix_str(f"{ref.name[:28]} (loading)")
            try:
                clip = ref.load(max_frames)
            except InputError as e:  # e.g. no face in a video: skip it, as prepare-data
                run.skipped.append((ref.name, str(e)))
                bar.write(f"warning: skipped {ref.name}: {e}")
                bar.update(sum(len(p) for p in points.values()))
                continue
            yaw = clip.yaw_range()
            run.clips.append({"name": clip.name, "frames": len(clip.frames),
                              "seconds": clip.seconds, "origin": clip.origin,
                              "yaw_range": yaw})
            keep = sheet and ((clip.name == sheet_clip) if sheet_clip
                              else yaw > run.sheet.yaw_range)
            if keep:
                run.sheet = SheetFrames(clip.name, yaw, sheet_indices(clip))
                run.sheet.frames["original"] = clip.frames[run.sheet.indices].copy()
            ref_lm = ref_id = None  # the original's landmarks and face descriptors: once
            for method in methods:
                done: dict[tuple, ClipScore] = {}  # one codec setting, several targets
                for target in points[method.name]:
                    label = method.name if target is None else f"{method.name}@{target:g}"
                    bar.set_postfix_str(f"{clip.name[:28]} {label}")
                    earlier = (reused or {}).get(method.name, {}).get((clip.name, target))
                    if earlier is not None and not keep:
                        run.scores.append(earlier)
                        bar.update()
                        continue
                    enc = method.run(clip, target)
                    enc.check(clip, method.name)
                    # below a codec's floor several targets give the same stream: score once
                    key = (repr(sorted(enc.setting.items())), int(enc.frame_bits.sum()))
                    if earlier is not None:
                        s = earlier
                    elif enc.setting and key in done:
                        s = replace(done[key], target_kbps=target, reached=enc.reached)
                    else:
                        if ref_lm is None:
                            ref_lm = track_landmarks(clip.frames)
                            if identity is not None:
                                ref_id = identity.reference(clip.frames)
                        s = score(clip, enc, method.name, target, lpips, ref_lm, identity,
                                  ref_id)
                        done[key] = s
                    if earlier is None and on_score is not None:
                        on_score(s)
                    run.scores.append(s)
                    if keep:
                        run.sheet.frames[label] = enc.frames[run.sheet.indices].copy()
                        run.sheet.kbps[label] = s.kbps_all
                    if log:
                        log(f"{clip.name} {label}: {s.kbps_all:.2f} kbps, LPIPS "
                            f"{s.lpips:.3f}, PSNR {s.psnr:.2f}, NME {s.nme:.3f}, "
                            f"identity {s.identity:.3f}, eye r {s.eye_corr:.2f}, mouth r "
                            f"{s.mouth_open_corr:.2f}, blinks {s.blink_hits}/{s.blink_frames}")
                    bar.update()
    for method in methods:
        method.close()
    return run
