"""Expression metrics of facecodec eval (eval/expression.py) on synthetic face meshes with
known eye and mouth openness, their place in ClipScore, the report's pooling of blink
recall over clips, the model card and --reuse of rows from before them. Fast: no
MediaPipe, no video."""

from __future__ import annotations

import math

import numpy as np
import pytest

from facecodec.eval import metrics
from facecodec.eval.base import Encoded, EvalClip
from facecodec.eval.expression import (
    EYE_LIDS,
    INNER_LIPS,
    MOUTH_CORNERS,
    OUTER_EYE_CORNERS,
    compare_expressions,
    correlation,
    expression_signals,
)
from facecodec.eval.metrics import ClipScore
from facecodec.eval.report import card_section, expression_table, summarize
from facecodec.eval.reuse import reusable

EYE_Y, MOUTH_Y = 100.0, 170.0  # outer eye corners 100 px apart: signal = gap in px / 100
OPEN, CLOSED = 30.0, 3.0  # lid gaps in px: openness 0.30 and 0.03


def template() -> np.ndarray:
    """(468, 2) points: random elsewhere, the eye corners 100 px apart on one line."""
    pts = np.random.default_rng(0).uniform(40, 220, (468, 2))
    pts[OUTER_EYE_CORNERS[0]], pts[OUTER_EYE_CORNERS[1]] = (50.0, EYE_Y), (150.0, EYE_Y)
    return pts


def mesh(eye: float, mouth: float = 10.0, width: float = 60.0) -> np.ndarray:
    """One face: every lid pair ``eye`` px apart, every inner-lip pair ``mouth`` px apart,
    the mouth corners ``width`` px apart."""
    pts = template()
    for k, (upper, lower) in enumerate(EYE_LIDS):
        x = 65.0 + 10 * k if k < 3 else 115.0 + 10 * (k - 3)
        pts[upper], pts[lower] = (x, EYE_Y - eye / 2), (x, EYE_Y + eye / 2)
    for k, (upper, lower) in enumerate(INNER_LIPS):
        x = 90.0 + 10 * k
        pts[upper], pts[lower] = (x, MOUTH_Y - mouth / 2), (x, MOUTH_Y + mouth / 2)
    pts[MOUTH_CORNERS[0]] = (100.0 - width / 2, MOUTH_Y)
    pts[MOUTH_CORNERS[1]] = (100.0 + width / 2, MOUTH_Y)
    return pts


def sequence(eyes, mouths=None) -> np.ndarray:
    """(T, 468, 2) meshes, one per eye gap (mouth gaps default to a slow talk)."""
    mouths = np.linspace(5, 25, len(eyes)) if mouths is None else mouths
    return np.stack([mesh(e, m) for e, m in zip(eyes, mouths, strict=True)])


def blinks(t: int, at: tuple[int, ...]) -> np.ndarray:
    """(t,) lid gaps: open, closed on the frames ``at``."""
    eyes = np.full(t, OPEN)
    eyes[list(at)] = CLOSED
    return eyes


def test_signals_have_known_values_in_eye_corner_units() -> None:
    sig = expression_signals(np.stack([mesh(30.0, 12.0, 60.0), mesh(3.0, 40.0, 70.0)]))
    assert sig["eye"] == pytest.approx([0.30, 0.03])
    assert sig["mouth_open"] == pytest.approx([0.12, 0.40])
    assert sig["mouth_width"] == pytest.approx([0.60, 0.70])
    # a face twice as near, elsewhere in the picture, has the same expression
    moved = expression_signals(2 * np.stack([mesh(30.0, 12.0)]) + 17.0)
    assert moved["eye"] == pytest.approx([0.30]) and moved["mouth_open"] == pytest.approx([0.12])


def test_an_output_that_blinks_with_the_original_has_recall_one() -> None:
    ref = sequence(blinks(30, (10, 11, 12)))
    out = sequence(blinks(30, (10, 11, 12)) * 0.9 + 1.0)  # other lids, same blink
    s = compare_expressions(out, ref)
    assert (s.blink_frames, s.blink_hits, s.false_blinks) == (3, 3, 0)
    assert s.blink_recall == 1.0
    assert s.eye_corr == pytest.approx(1.0) and s.mouth_open_corr == pytest.approx(1.0)
    # eye gap 0.9 g + 1 px against g: error |0.1 g - 1| / 100 per frame
    assert s.eye_error == pytest.approx((27 * 0.02 + 3 * 0.007) / 30)
    assert s.mouth_open_error == pytest.approx(0.0)


def test_a_frozen_output_never_blinks_and_has_no_correlation() -> None:
    ref = sequence(blinks(30, (10, 11, 12)))
    frozen = np.broadcast_to(mesh(OPEN, 15.0), ref.shape).copy()
    s = compare_expressions(frozen, ref)
    assert (s.blink_frames, s.blink_hits, s.false_blinks) == (3, 0, 0)
    assert s.blink_recall == 0.0
    assert math.isnan(s.eye_corr) and math.isnan(s.mouth_open_corr)
    assert math.isnan(s.mouth_width_corr)  # constant in both: undefined, not 0 or 1
    assert s.eye_error == pytest.approx(3 * 0.27 / 30)
    assert s.mouth_open_error == pytest.approx(np.abs(np.linspace(5, 25, 30) - 15).mean() / 100)


def test_closed_eyes_where_the_original_is_open_are_false_blinks() -> None:
    ref = sequence(blinks(30, (10, 11, 12)))
    out = sequence(blinks(30, (11, 20, 21)))
    s = compare_expressions(out, ref)
    assert (s.blink_frames, s.blink_hits, s.false_blinks) == (3, 1, 2)
    assert s.blink_recall == pytest.approx(1 / 3)
    assert s.eye_corr < 0.5


def test_no_blink_in_the_original_gives_no_recall() -> None:
    ref = sequence(np.full(20, OPEN))
    s = compare_expressions(sequence(blinks(20, (5,))), ref)
    assert (s.blink_frames, s.blink_hits, s.false_blinks) == (0, 0, 1)
    assert math.isnan(s.blink_recall)


def test_missing_faces() -> None:
    ref = sequence(blinks(30, (10, 11, 12)))
    out = sequence(blinks(30, (10, 11, 12)) + 3.0)  # 0.03 more open on every frame
    # frames without the original's face are left out of every figure
    ref_lost = ref.copy()
    ref_lost[[0, 11]] = np.nan
    s = compare_expressions(out, ref_lost)
    assert s.eye_error == pytest.approx(0.03) and s.eye_corr == pytest.approx(1.0)
    assert (s.blink_frames, s.blink_hits, s.false_blinks) == (2, 2, 0)
    # an output without a face on blink frames misses them (same blink frames as any
    # other method on this clip), and its other frames still count
    out_lost = out.copy()
    out_lost[[10, 11]] = np.nan
    s = compare_expressions(out_lost, ref)
    assert (s.blink_frames, s.blink_hits) == (3, 1)
    assert s.eye_error == pytest.approx(0.03)
    # no face in the output at all: nothing to compare, every blink missed
    s = compare_expressions(np.full_like(out, np.nan), ref)
    assert math.isnan(s.eye_error) and math.isnan(s.eye_corr)
    assert (s.blink_frames, s.blink_hits, s.false_blinks) == (3, 0, 0)


def test_correlation_edge_cases() -> None:
    y = np.sin(np.arange(50.0))
    assert correlation(2 * y + 1, y) == pytest.approx(1.0)
    assert correlation(-y, y) == pytest.approx(-1.0)
    # a constant series whose mean is not exact in floating point is still constant
    assert math.isnan(correlation(np.full(50, 0.1), y))
    assert math.isnan(correlation(y[:2], y[:2]))  # fewer than 3 frames
    gaps = y.copy()
    gaps[[3, 7]] = np.nan
    assert correlation(gaps, y) == pytest.approx(1.0)


def test_score_holds_the_last_face_of_the_output(monkeypatch) -> None:
    """score(): the expression fields come from the output's mesh with frames where the
    face is lost holding the last face found, as for NME."""
    t = 12
    ref = sequence(blinks(t, (5, 6)))
    out = sequence(blinks(t, (5, 6)))
    out[6] = np.nan  # lost on the second blink frame
    monkeypatch.setattr(metrics, "track_landmarks", lambda frames: out)
    monkeypatch.setattr(metrics, "ms_ssim", lambda a, b: np.ones(len(a)))
    frames = np.zeros((t, 8, 8, 3), np.uint8)
    clip = EvalClip("synthetic", frames)
    enc = Encoded(frames.copy(), np.full(t, 100, dtype=np.int64))
    s = metrics.score(clip, enc, "m", None, lambda a, b: np.zeros(len(a)), ref)
    # frame 6 shows frame 5's face, closed: both blink frames are hits
    assert (s.blink_frames, s.blink_hits, s.false_blinks) == (2, 2, 0)
    assert s.eye_corr == pytest.approx(1.0) and s.eye_error == pytest.approx(0.0)
    assert s.face_found == pytest.approx(11 / 12)
    assert s.as_dict()["blink_recall"] == 1.0


def clip_score(clip: str, method: str, eye_corr: float, blink: tuple[int, int, int],
               eye_error: float = 0.01) -> ClipScore:
    frames, hits, false = blink
    return ClipScore(
        clip=clip, method=method, target_kbps=None, setting={}, reached=True, frames=30,
        seconds=2.0, bits_total=0, bits_first=0, bits_per_frame=0.0, kbps_steady=0.0,
        kbps_all=0.0, lpips=0.1, psnr=30.0, ms_ssim=0.9, nme=0.02, identity=math.nan,
        face_found=1.0, motion_ratio=1.0, motion_error=0.0, flicker=0.0,
        eye_error=eye_error, mouth_open_error=0.02, mouth_width_error=0.03,
        eye_corr=eye_corr, mouth_open_corr=0.5, mouth_width_corr=math.nan,
        blink_frames=frames, blink_hits=hits, false_blinks=false, encode_fps=None,
        decode_fps=None)


def scores() -> list[ClipScore]:
    """Three clips: one blink frame hit, nine missed, no blink (recall NaN)."""
    return [clip_score("a", "facecodec", 0.8, (1, 1, 0), 0.01),
            clip_score("b", "facecodec", math.nan, (9, 0, 2), 0.02),
            clip_score("c", "facecodec", 0.6, (0, 0, 1), math.nan),
            clip_score("a", "zero-bit", math.nan, (1, 0, 0)),
            clip_score("b", "zero-bit", math.nan, (9, 0, 0)),
            clip_score("c", "zero-bit", math.nan, (0, 0, 0))]


def test_summary_pools_blink_recall_and_averages_the_rest() -> None:
    model, held = summarize(scores())
    # pooled: 1 hit of 10 blink frames, not the mean of the clips' recalls (1, 0, NaN)
    assert model.pooled == {"blink_frames": 10, "blink_hits": 1, "false_blinks": 3,
                            "blink_recall": pytest.approx(0.1)}
    assert model.means["eye_corr"] == pytest.approx(0.7)  # NaN left out
    assert model.means["eye_error"] == pytest.approx(0.015)
    assert math.isnan(model.means["mouth_width_corr"])
    assert held.pooled["blink_recall"] == 0.0 and math.isnan(held.means["eye_corr"])
    lines = expression_table([model, held]).splitlines()
    assert lines[2] == ("| facecodec | - | 0.015 | 0.020 | 0.030 | 0.70 | 0.50 | - | "
                        "0.10 (1/10) | 3 |")
    assert lines[3] == "| zero-bit | - | 0.010 | 0.020 | 0.030 | - | 0.50 | - | 0.00 (0/10) | 0 |"


def test_results_json_and_model_card_carry_the_expression_figures(tmp_path) -> None:
    import json

    from facecodec.eval.report import results_json
    from facecodec.eval.runner import EvalRun

    run = EvalRun(scores=scores(), clips=[{"name": c} for c in "abc"])
    info = {"command": "facecodec eval", "commit": "abc1234", "date": "2026-12-01",
            "clips_from": "val split of manifest.csv",
            "methods": {"facecodec": {"model": str(tmp_path)}, "zero-bit": {}}}
    doc = json.loads(results_json(run, info))
    row = doc["summary"][0]
    assert row["blink_recall"] == pytest.approx(0.1) and row["blink_frames"] == 10
    assert row["eye_corr"] == pytest.approx(0.7) and row["mouth_width_corr"] is None
    assert doc["scores"][1]["blink_recall"] == 0.0 and doc["scores"][2]["blink_recall"] is None
    card = card_section(doc, tmp_path, None)
    assert "| eye r | mouth open r | mouth width r | blink recall (hits/frames) |" in card
    rows = [ln for ln in card.splitlines() if ln.startswith("| facecodec")]
    assert rows[0].endswith("| 0.70 | 0.50 | - | 0.10 (1/10) |")
    held = [ln for ln in card.splitlines() if ln.startswith("| zero-bit")]
    assert held[0].endswith("| - | 0.50 | - | 0.00 (0/10) |")


def test_rows_from_before_the_expression_metrics_are_run_again() -> None:
    settings, targets = {"x264": {"preset": "medium"}}, {"x264": [10.0]}
    new = clip_score("c", "x264", math.nan, (4, 2, 0)).as_dict()
    new["target_kbps"] = 10.0
    from facecodec.eval.report import jsonable

    new = jsonable(new)  # NaN stored as null
    old = {k: v for k, v in new.items()
           if k not in ("eye_error", "mouth_open_error", "mouth_width_error", "eye_corr",
                        "mouth_open_corr", "mouth_width_corr", "blink_frames", "blink_hits",
                        "false_blinks", "blink_recall")}
    doc = {"max_frames": None, "methods": jsonable(settings), "scores": [old]}
    assert reusable(doc, settings, targets, ["c"], None) == {}  # no crash, no gap: rerun
    doc["scores"] = [new]
    score = reusable(doc, settings, targets, ["c"], None)["x264"]["c", 10.0]
    assert math.isnan(score.eye_corr) and score.blink_recall == 0.5
