"""The frame picks of bench/expression_sheet.py (the contact sheet of blinks, open mouths
and smiles) on synthetic expression signals, and the sheet's layout. Fast: no MediaPipe,
no model."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from expression_sheet import TILE, pick_frames, sheet_image  # noqa: E402


def signals(eye, mouth=None, width=None) -> dict[str, np.ndarray]:
    t = len(eye)
    return {"eye": np.asarray(eye, float),
            "mouth_open": np.full(t, 0.02) if mouth is None else np.asarray(mouth, float),
            "mouth_width": np.full(t, 0.5) if width is None else np.asarray(width, float)}


def series(t: int, base: float, dips: dict[int, float]) -> np.ndarray:
    x = np.full(t, base)
    for i, v in dips.items():
        x[i] = v
    return x


def test_blinks_rank_by_depth_relative_to_the_clip_median():
    # clip 0: open at 0.30, a blink at 10-11 (0.05, 0.08) and a half-closure at 30 (0.12);
    # clip 1: smaller eyes (0.20), a blink at 5 (0.04: lower than 0.05, but 0.20 of its
    # median against clip 0's 0.17)
    clips = [signals(series(40, 0.30, {10: 0.05, 11: 0.08, 30: 0.12})),
             signals(series(20, 0.20, {5: 0.04}))]
    picks = pick_frames(clips, k=3, min_gap=8, per_clip=2)
    # frame 11 is the same blink as 10 (within min_gap): the next pick is clip 0's 30
    assert picks["blink"] == [(0, 10), (1, 5), (0, 30)]
    assert pick_frames(clips, k=3, min_gap=8, per_clip=1)["blink"] == [(0, 10), (1, 5)]
    assert pick_frames(clips, k=3, min_gap=1, per_clip=None)["blink"] == [
        (0, 10), (1, 5), (0, 11)]


def test_open_mouths_are_absolute_and_smiles_relative():
    # open mouths: the widest inner-lip gap whatever the clip's median (clip 1 talks all
    # along at 0.10; clip 0 is shut, 0.01, but opens wide once, 0.30 at frame 3)
    # smiles: clip 1's mouth is wide all along (0.80, 0.85 at 7: 1.06 of its median);
    # clip 0 widens from 0.50 to 0.60 (1.20) at 12
    clips = [signals(series(20, 0.30, {}), series(20, 0.01, {3: 0.30}),
                     series(20, 0.50, {12: 0.60})),
             signals(series(20, 0.30, {}), series(20, 0.10, {9: 0.20}),
                     series(20, 0.80, {7: 0.85}))]
    picks = pick_frames(clips, k=2, min_gap=8, per_clip=1)
    assert picks["mouth"] == [(0, 3), (1, 9)]
    assert picks["smile"] == [(0, 12), (1, 7)]


def test_no_face_frames_and_clips_are_never_picked():
    face = signals(series(12, 0.30, {4: 0.10}))
    for x in face.values():  # no face at 6: NaN signals, never ranked (a NaN sorts anywhere)
        x[6] = np.nan
    clips = [face, signals(np.full(12, np.nan), np.full(12, np.nan), np.full(12, np.nan))]
    picks = pick_frames(clips, k=20, min_gap=1, per_clip=None)
    assert picks["blink"][0] == (0, 4)
    assert all(c == 0 and t != 6 for kind in picks.values() for c, t in kind)
    assert len(picks["blink"]) == 11


def test_picks_over_all_clips_are_among_each_clips_own():
    """The bench keeps pictures only of each clip's own picks: enough for the final ones."""
    rng = np.random.default_rng(0)
    clips = [signals(rng.uniform(0.05, 0.4, 60), rng.uniform(0, 0.3, 60),
                     rng.uniform(0.4, 0.7, 60)) for _ in range(5)]
    final = pick_frames(clips, k=6, min_gap=5, per_clip=2)
    for kind, picks in final.items():
        assert len(picks) == 6
        for c, t in picks:
            own = pick_frames([clips[c]], k=6, min_gap=5, per_clip=2)[kind]
            assert (0, t) in own


def test_sheet_layout():
    red, blue = np.zeros((256, 256, 3), np.uint8), np.zeros((256, 256, 3), np.uint8)
    red[..., 0], blue[..., 2] = 255, 255
    group = ("clip t=3", [(red, "original", "eye 0.20"), (blue, "model", "eye 0.20 / 0.90")])
    image = sheet_image(["title"], [("Blinks", [group] * 5), ("Smiles", [])], tile=TILE,
                        max_width=1800)
    # 4 groups of 2 tiles fit in 1800 px: the 5 go on two lines of 3 and 2
    group_w = 2 * TILE + 4
    assert image.shape[1] == 2 * 12 + 3 * group_w + 2 * 14 and image.shape[2] == 3
    rows = np.flatnonzero((image == (255, 0, 0)).all(-1).any(1))
    assert len(rows) == 2 * TILE  # two lines of tiles
    assert (image == (0, 0, 255)).all(-1).sum() == 5 * TILE * TILE
