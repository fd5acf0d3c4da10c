"""The closed-loop source choice (facecodec/sender/coverage.py) on synthetic errors."""

from __future__ import annotations

import numpy as np
import pytest

from facecodec.sender.coverage import (
    LiveCoverage,
    cover,
    picture_error,
    sample_frames,
    smoothed,
)
from facecodec.sender.sources import source_candidates


def test_sample_frames_one_per_interval_from_its_middle():
    assert sample_frames(50, 15).tolist() == [7, 22, 37]
    assert sample_frames(5, 15).tolist() == [4]  # a clip shorter than the stride: its last
    assert sample_frames(1, 1).tolist() == [0]


def test_sample_frames_thinned_evenly_to_the_limit():
    idx = sample_frames(1000, 1, limit=5)
    assert idx.tolist() == [0, 250, 500, 749, 999]


def test_picture_error_compares_block_means():
    a = np.zeros((2, 8, 8, 3), np.uint8)
    b = a.copy()
    b[0] = 255  # all white against black: error 1
    b[1, :4, :4] = 255  # a quarter white: 0.25
    assert picture_error(a, b, scale=4).tolist() == pytest.approx([1.0, 0.25])
    # a checkerboard of single pixels averages out at 4x4: blind to fine texture
    c = a.copy()
    c[1, ::2, ::2] = c[1, 1::2, 1::2] = 255
    assert picture_error(np.full_like(a, 127), c, scale=4)[1] == pytest.approx(0.5 / 255, abs=1e-6)
    with pytest.raises(ValueError):
        picture_error(a, a[:, :4])


def test_smoothed_averages_neighbours():
    assert smoothed(np.array([0.0, 3.0, 0.0, 0.0])).tolist() == pytest.approx([1.5, 1, 1, 0])
    assert smoothed(np.array([2.0])).tolist() == [2.0]


def _distance_errors(samples: np.ndarray, calls: list[list[int]]):
    """A stand-in receiver: it draws a frame as badly as it is far (in frames) from the
    nearest source."""
    def errors(sources: list[int]) -> np.ndarray:
        calls.append(list(sources))
        return np.min(np.abs(samples[:, None] - np.array(sources)[None]), axis=1).astype(float)
    return errors


def test_cover_adds_the_worst_drawn_stretch_first():
    samples = np.arange(0, 100, 10)
    calls: list[list[int]] = []
    got = cover(0, samples, np.ones(10, bool), 3, _distance_errors(samples, calls))
    # farthest from frame 0 is the end (smoothed over its neighbours: 90 still wins); then
    # the middle, farthest from both (40 and 50 tie; the first is taken)
    assert got.sources == [0, 90, 40]
    assert calls == [[0], [0, 90], [0, 90, 40]]
    # the mean error falls with each source
    assert got.errors == pytest.approx([45.0, 20.0, 10.0])


def test_cover_takes_only_usable_frames_away_from_the_chosen():
    samples = np.arange(0, 100, 10)
    usable = np.ones(10, bool)
    usable[9] = False  # the end has closed eyes: the next worst is taken
    got = cover(0, samples, usable, 2, _distance_errors(samples, []))
    assert got.sources == [0, 80]
    # nothing usable beyond min_gap of the chosen: fewer sources come back
    got = cover(0, samples, usable, 5, _distance_errors(samples, []), min_gap=50)
    assert got.sources == [0, 80]
    assert len(got.errors) == 2


def test_cover_rejects_mismatched_inputs():
    with pytest.raises(ValueError):
        cover(0, [1, 2], [True], 2, lambda s: np.zeros(2))


def test_source_candidates_fall_back_when_no_frame_qualifies():
    valid = np.array([True, True, True, False])
    eyes = np.array([0.3, 0.3, 0.1, 0.3])
    assert source_candidates(valid, eyes).tolist() == [True, True, False, False]
    # no openness measured (all zero): every valid frame is a candidate
    assert source_candidates(valid, np.zeros(4)).tolist() == [True, True, True, False]


def test_live_coverage_checks_one_frame_per_interval():
    loop = LiveCoverage(every=15)
    assert [i for i in range(50) if loop.due(i)] == [7, 22, 37]


def test_live_coverage_fills_free_slots_when_a_window_is_worse_than_usual():
    loop = LiveCoverage(every=1, window=3, fill=1.1, replace=1.5, min_checks=5)
    for i in range(8):  # a steady call: nothing due
        assert loop.check(0.1, f"f{i}", True, full=False) is None
    # one bad check lifts the mean of the last three (0.2) above 1.1 x the median (0.1)
    assert loop.check(0.4, "bad", True, full=False) == "bad"
    # the window starts again: three new checks before the next source
    assert loop.check(0.4, "bad2", True, full=False) is None
    assert loop.check(0.45, "bad3", True, full=False) is None
    assert loop.check(0.5, "bad4", False, full=False) == "bad3"  # the worst *usable* one


def test_live_coverage_full_set_needs_a_larger_change_and_waits_for_sources_in_flight():
    loop = LiveCoverage(every=1, window=3, fill=1.1, replace=1.5, min_checks=3)
    for i in range(6):
        loop.check(0.1, i, True, full=True)
    assert loop.check(0.14, "a", True, full=True) is None  # 1.4x the median: not enough
    assert loop.check(0.5, "b", True, full=True, busy=True) is None  # a source on its way
    assert loop.check(0.5, "c", True, full=True) == "b"
    loop = LiveCoverage(every=1, window=2, min_checks=1)
    assert loop.check(1.0, "x", False, full=False) is None
    assert loop.check(2.0, "y", False, full=False) is None  # nothing usable: nothing sent
