"""``facecodec eval --calls`` (issue 17, "judged like a call"): the ladder's scaling and
frame-repeat arithmetic, the call clips' loops, the codec's refused budgets, and the calls
mode end to end on a small cached clip. Everything is written to tmp_path."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from eval_helpers import moving_clip, sender_meta
from test_eval_cli import fake_cache

from facecodec.cli import cli
from facecodec.errors import InputError
from facecodec.eval.base import EvalClip
from facecodec.eval.budgeted import spread
from facecodec.eval.calls import cut_clip, loop_clip, pingpong
from facecodec.eval.ladder import (
    LadderCodec,
    frame_step,
    reduce_frames,
    restore_frames,
    spread_bits,
)

# --- the ladder's arithmetic --------------------------------------------------------------


def test_frame_step_takes_only_whole_divisions_of_15_fps() -> None:
    assert frame_step(15) == 1 and frame_step(7.5) == 2 and frame_step(5) == 3
    for bad in (10, 0, 20, -7.5):
        with pytest.raises(InputError, match="fps must divide"):
            frame_step(bad)


def test_reduce_keeps_every_step_th_frame_from_the_first() -> None:
    frames = np.random.default_rng(3).integers(0, 256, (5, 256, 256, 3), dtype=np.uint8)
    same = reduce_frames(frames, 256, 2)
    assert np.array_equal(same, frames[[0, 2, 4]])
    small = reduce_frames(frames, 128, 2)
    assert small.shape == (3, 128, 128, 3) and small.dtype == np.uint8
    # area averaging: each pixel the mean of its 2x2 block (up to rounding)
    block = frames[2, :2, :2].astype(float).mean(axis=(0, 1))
    assert np.abs(small[1, 0, 0] - block).max() <= 1


def test_restore_repeats_each_picture_until_the_next_and_cuts_at_t() -> None:
    colours = np.array([[10, 20, 30], [200, 100, 0], [0, 255, 128]], np.uint8)
    decoded = np.broadcast_to(colours[:, None, None], (3, 128, 128, 3)).copy()
    out = restore_frames(decoded, 2, 5)
    assert out.shape == (5, 256, 256, 3)
    shown = [tuple(f[100, 100]) for f in out]  # a flat picture stays flat when enlarged
    assert shown == [tuple(colours[k]) for k in (0, 0, 1, 1, 2)]
    assert np.array_equal(restore_frames(decoded, 1, 3)[:, 7, 9], colours)
    with pytest.raises(ValueError, match="cover 6 frames, not 7"):
        restore_frames(decoded, 2, 7)


def test_bits_stay_on_the_frame_they_were_sent_for() -> None:
    assert spread_bits(np.array([10, 20, 30]), 2, 5).tolist() == [10, 0, 20, 0, 30]
    assert spread_bits(np.array([10, 20, 30]), 2, 6).tolist() == [10, 0, 20, 0, 30, 0]
    assert spread_bits(np.array([7, 8]), 1, 2).tolist() == [7, 8]


def test_a_ladder_rung_end_to_end_on_a_synthetic_pan() -> None:
    clip = EvalClip("pan", moving_clip(9), meta=sender_meta(9))
    rung = LadderCodec(size=128, fps=7.5)
    assert rung.name == "svtav1-ladder:size=128;fps=7.5"
    assert rung.operating_points([3.0, 8.0]) == [3.0, 8.0, None]
    coarsest = rung.run(clip, None)
    coarsest.check(clip, rung.name)
    assert coarsest.setting["crf"] == 63 and coarsest.setting["coarsest"]
    assert (coarsest.frame_bits[1::2] == 0).all() and (coarsest.frame_bits[::2] > 0).all()
    assert np.array_equal(coarsest.frames[0], coarsest.frames[1])  # repeated at 15 fps
    assert coarsest.setting["first_face_bits"] >= coarsest.frame_bits[0] > 0
    full = LadderCodec(size=256, fps=15).run(clip, 400.0)
    assert full.frame_bits.sum() > coarsest.frame_bits.sum()  # a finer CRF for 400 kbps
    err = [np.abs(e.frames.astype(int) - clip.frames).mean() for e in (coarsest, full)]
    assert err[1] < err[0]
    with pytest.raises(InputError, match="size must be even"):
        LadderCodec(size=300)


# --- the call clips -----------------------------------------------------------------------


def test_pingpong_turns_without_a_cut_or_a_repeated_frame() -> None:
    assert pingpong(4, 10).tolist() == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3]
    assert pingpong(1, 3).tolist() == [0, 0, 0]
    assert pingpong(2, 5).tolist() == [0, 1, 0, 1, 0]
    for n in (2, 3, 7, 40):
        idx = pingpong(n, 200)
        assert (np.abs(np.diff(idx)) == 1).all() and idx.min() == 0 and idx.max() == n - 1
    with pytest.raises(ValueError):
        pingpong(0, 3)


def test_loop_clip_takes_frames_values_and_sound_together() -> None:
    t = 5
    frames = np.zeros((t, 4, 4, 3), np.uint8) + np.arange(t, dtype=np.uint8)[:, None, None, None]
    meta = sender_meta(t, yaw=np.arange(t, dtype=np.float32))
    pcm = np.arange(t * 3200, dtype=np.int16)  # 1/3 s at 48 kHz for 5 frames at 15 fps
    clip = EvalClip("c", frames, meta=meta, audio=pcm, origin="cache")
    looped = loop_clip(clip, 12, "c[loop]")
    expect = [0, 1, 2, 3, 4, 3, 2, 1, 0, 1, 2, 3]
    assert looped.name == "c[loop]" and looped.frames[:, 0, 0, 0].tolist() == expect
    assert looped.meta["yaw"].tolist() == expect and len(looped.meta["sup"]) == 12
    assert len(looped.audio) == 12 * 3200  # sound looped forward, to the same length
    assert np.array_equal(looped.audio[len(pcm):len(pcm) + 10], pcm[:10])
    assert "ping-pong loop of 5 frames" in looped.origin
    assert loop_clip(EvalClip("q", frames, meta=meta), 7, "q").audio is None
    cut = cut_clip(clip, 2)
    assert len(cut.frames) == 2 and len(cut.meta["yaw"]) == 2 and len(cut.audio) == 6400


def test_sound_spread_over_the_frames_keeps_its_total() -> None:
    for total, t in ((0, 3), (10, 3), (24001, 900), (5, 7)):
        s = spread(total, t)
        assert len(s) == t and s.sum() == total and s.max() - s.min() <= 1


# --- the codec's budgets --------------------------------------------------------------------


def test_a_refused_budget_is_kept_with_the_minimum_and_the_minimum_works() -> None:
    from facecodec.eval.budgeted import BudgetedCodec

    fixed = BudgetedCodec(kbps="4/8", sound="yes")
    assert fixed.operating_points([5.0]) == [8.0]  # its own budgets, not the run's
    msg = fixed.refused[4.0]
    need = float(re.search(r"needs at least ([0-9.]+) kbps", msg).group(1))
    assert 4.0 < need < 8.0
    assert fixed.operating_points([need]) == [8.0]  # kbps= fixed: the rates do not matter
    # the named minimum works
    assert BudgetedCodec(sound="yes").operating_points([need]) == [need]
    assert BudgetedCodec().operating_points([3.0]) == [3.0]  # without sound 3 kbps does
    loud = BudgetedCodec(sound="yes")
    assert loud.operating_points([4.0, 30.0]) == [30.0] and 4.0 in loud.refused
    assert "sound" in loud.refused[4.0] and loud.settings()["refused"]["4"]
    assert loud.applies(EvalClip("x", np.zeros((2, 4, 4, 3), np.uint8))) == \
        "the clip has no sound"
    with pytest.raises(InputError, match="yes or no"):
        BudgetedCodec(sound="loud")


def test_calls_mode_end_to_end_reports_scores_and_refusals(tmp_path: Path) -> None:
    manifest = fake_cache(tmp_path, "pan", moving_clip(14))
    # the codec writes the crop box in its stream: one that places the tube in a picture
    np.savez(tmp_path / "cache" / "pan" / "meta.npz", **sender_meta(14))
    report = tmp_path / "docs" / "EVAL_CALLS.md"
    result = CliRunner().invoke(cli, [
        "eval", "--calls", "--manifest", str(manifest), "--cache", str(tmp_path / "cache"),
        "--methods", "svtav1-ladder:size=128;fps=7.5,facecodec-budget,"
                     "facecodec-budget:sound=yes;kbps=4/20",
        "--rates", "3,6", "--max-frames", "10", "--call-seconds", "2", "--loops", "1",
        "--which", "loops",
        "--report", str(report), "--no-progress"])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "docs" / "eval_calls" / "results.json").read_text())
    assert doc["complete"] and [c["name"] for c in doc["clips"]] == ["pan[loop 2s]"]
    assert doc["clips"][0]["frames"] == 10 and not doc["clips"][0]["sound"]
    rows = {(s["method"], s["target_kbps"]): s for s in doc["scores"]}
    ladder = "svtav1-ladder:size=128;fps=7.5"
    assert set(rows) == {(ladder, 3.0), (ladder, 6.0), (ladder, None),
                         ("facecodec-budget", 3.0), ("facecodec-budget", 6.0)}
    codec = rows["facecodec-budget", 6.0]
    assert codec["setting"]["first_face_bits"] > 0 and codec["setting"]["sources_planned"] >= 3
    assert codec["bits_total"] > codec["setting"]["first_face_bits"]
    loud = "facecodec-budget:sound=yes;kbps=4/20"
    assert "needs at least" in doc["refused"][loud]["4"]
    assert doc["not_run"] == [{"clip": "pan[loop 2s]", "method": loud,
                               "why": "the clip has no sound"}]
    text = report.read_text()
    assert "## Budgets the codec refuses" in text and f"| {loud} | 4 |" in text
    assert "first face at 6 kbps" in text
    for png in ("calls_lpips.png", "calls_nme.png", "calls_identity.png"):
        assert (tmp_path / "docs" / "eval_calls" / png).stat().st_size > 1000
    again = tmp_path / "again.md"  # the report of a results file, as of a stopped run
    result = CliRunner().invoke(cli, ["eval", "--calls", "--from-results", str(
        tmp_path / "docs" / "eval_calls" / "results.json"), "--report", str(again)])
    assert result.exit_code == 0, result.output
    redone = again.read_text()
    assert "[results.json](docs/eval_calls/results.json)" in redone
    assert redone.split("\n", 3)[3].replace("again/", "eval_calls/") == text.split("\n", 3)[3]


def test_runs_merge_into_one_report(tmp_path: Path) -> None:
    from facecodec.eval.calls_session import merge

    def row(clip: str, method: str, target: float | None, lp: float) -> dict:
        return {"clip": clip, "method": method, "target_kbps": target, "lpips": lp}

    def doc(clips: list[str], scores: list[dict], complete: bool) -> dict:
        return {"command": f"run {len(clips)}", "commit": "abc", "date": "d",
                "elapsed_min": 2.0, "threads": 1, "complete": complete,
                "planned_calls": clips, "methods": {s["method"]: {} for s in scores},
                "refused": {}, "not_run": [], "identity": None,
                "clips": [{"name": c} for c in clips], "scores": scores}

    stopped = doc(["call", "loop"], [row("call", "a", 3.0, 0.1)], complete=False)
    second = doc(["loop"], [row("loop", "b", 3.0, 0.2), row("loop", "b", None, 0.3)], True)
    merged = merge([stopped, second])
    assert [c["name"] for c in merged["clips"]] == ["call", "loop"]
    assert len(merged["scores"]) == 3 and merged["elapsed_min"] == 4.0
    assert set(merged["methods"]) == {"a", "b"} and len(merged["parts"]) == 2
    assert not merged["complete"] and merged["command"] == "run 2 ; run 1"
    redo = doc(["call"], [row("call", "a", 3.0, 0.05)], True)  # a later score replaces
    assert [r["lpips"] for r in merge([stopped, redo])["scores"]] == [0.05]


def test_the_targets_judge_the_rows_with_and_without_sound() -> None:
    from facecodec.eval.calls_report import targets

    def row(method: str, target: float | None, kbps: float, lpips: float, nme: float) -> dict:
        return {"clip": "c", "method": method, "target_kbps": target, "kbps_all": kbps,
                "lpips": lpips, "nme": nme, "reached": True,
                "setting": {"first_face_bits": 12000}}

    doc = {"scores": [row("facecodec-budget", 6.0, 5.8, 0.22, 0.05),
                      row("facecodec-budget:sound=yes", 6.0, 6.1, 0.23, 0.06),
                      row("svtav1-ladder:size=256;fps=7.5", 6.0, 6.06, 0.05, 0.04),
                      row("svtav1-ladder:size=256;fps=15", 6.0, 6.4, 0.06, 0.02)],
           "refused": {}}
    lines = targets(doc, "c")
    loud = next(x for x in lines if "with sound" in x)
    # the rung at or below 6.1 x 1.03 kbps: 6.06, not 6.4
    assert "6.11" not in loud and "6.10 kbps all-in" in loud and "fps=7.5" in loud
    assert "LPIPS target **not met**" in loud and "NME 0.060" in loud
    quiet = next(x for x in lines if "without sound" in x)
    assert "5.80 kbps all-in" in quiet and "no SVT-AV1 rung" in quiet  # 6.06 > 5.8 x 1.03
    doc["refused"] = {"facecodec-budget:sound=yes": {"6": "needs at least 7 kbps"}}
    doc["scores"] = doc["scores"][:1]
    assert any("refused by the plan" in x for x in targets(doc, "c"))


def test_the_calls_table_names_an_unbudgeted_codec_row() -> None:
    """The codec without a budget (``facecodec``) has no dead zone of its own in its
    setting: the row says the prior's (it was a TypeError at the end of a run)."""
    from facecodec.eval.calls_report import clip_table

    row = {"method": "facecodec", "target_kbps": 0.0, "reached": True, "kbps_all": 4.9,
           "lpips": 0.2, "nme": 0.05, "identity": 0.4,
           "setting": {"sources_sent": 3, "sources_planned": 3, "deadband": None,
                       "first_face_bits": None}}
    assert "sources 3/3, dead zone the prior's |" in clip_table([row])
