"""Sender front end, the parts that need no face model: time resampling, orientation,
smoothing, pose geometry, tube policy, source selection, cache files. Fast."""

from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from facecodec.errors import InputError
from facecodec.sender.pose import FOREHEAD, LEFT_RIGHT_PAIRS, head_pose
from facecodec.sender.prepare import _NpyAppender, clip_complete, prepare_data, read_manifest
from facecodec.sender.smoothing import OneEuroFilter
from facecodec.sender.sources import SourcePolicy, picture_stats, select_sources, steady_mask
from facecodec.sender.tube import Box, TubeTracker, from_tube, make_box, to_tube
from facecodec.sender.video import (
    VideoReader,
    check_image,
    live_frames,
    orientation_from_matrix,
    resample,
)

# --- time resampling ---------------------------------------------------------------------


def picks(times, fps):
    return [(k, round(t, 6), item) for k, t, item in resample([(t, i) for i, t in
                                                               enumerate(times)], fps)]


def test_resample_25_to_15_counts_and_nearest():
    times = [i / 25 for i in range(125)]  # 5 s
    out = picks(times, 15)
    assert len(out) == 75
    for k, t, i in out:
        assert t == round(k / 15, 6)
        assert abs(times[i] - k / 15) <= 0.5 / 25 + 1e-9  # the nearest source frame


def test_resample_upsamples_by_repeating_and_keeps_one_frame_videos():
    out = picks([i / 10 for i in range(20)], 15)  # 10 -> 15 fps: 30 frames, some repeated
    assert len(out) == 30 and len({i for _, _, i in out}) == 20
    assert picks([3.2], 15) == [(0, 0.0, 0)]  # a single frame, whatever its timestamp


def test_resample_variable_frame_rate_uses_timestamps():
    # a burst at 60 fps, then a 0.5 s freeze, then 10 fps: output stays on a 15 fps grid
    times = [i / 60 for i in range(30)] + [1.0 + i / 10 for i in range(10)]
    out = picks(times, 15)
    assert [t for _, t, _ in out] == [round(k / 15, 6) for k in range(len(out))]
    for _, t, i in out:
        nearest = min(range(len(times)), key=lambda j: (abs(times[j] - t), -j))
        assert abs(times[i] - t) == pytest.approx(abs(times[nearest] - t))
    assert picks(times, None)[5] == (5, round(5 / 60, 6), 5)  # fps=None: source frames


def _write_video(path: Path, frames, fps=15, time_base=None, pts=None, rotation=None,
                 codec="libx264"):
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.height, s.width = frames[0].shape[:2]
        s.pix_fmt = "yuv420p"
        if time_base is not None:
            s.time_base = time_base
        if rotation is not None:
            s.set_display_rotation(rotation)
        for i, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            if pts is not None:
                f.pts, f.time_base = pts[i], time_base
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def test_reader_variable_frame_rate_file(tmp_path):
    # frame i is uniformly grey at level 10*i, shown at irregular times (ms)
    pts = [0, 20, 40, 200, 210, 600, 633, 666, 700, 1000]
    frames = [np.full((32, 48, 3), 10 * i, np.uint8) for i in range(len(pts))]
    path = tmp_path / "vfr.mkv"
    _write_video(path, frames, fps=1000, time_base=Fraction(1, 1000), pts=pts)
    with VideoReader(path, fps=15) as video:
        got = [(f.time, int(round(f.image.mean() / 10))) for f in video]
    times = [p / 1000 for p in pts]
    for t, level in got:
        nearest = min(range(len(times)), key=lambda j: (abs(times[j] - t), -j))
        assert level == nearest, (t, level)
    # the last frame is shown for half its preceding interval (0.3 s) more: up to 1.15 s
    assert [round(t * 15) for t, _ in got] == list(range(18))


@pytest.mark.parametrize("codec,ext", [("libx264", "mp4"), ("libx265", "mov"),
                                       ("libvpx-vp9", "webm"), ("libsvtav1", "mkv")])
def test_reader_decodes_the_usual_codecs_and_containers(tmp_path, codec, ext):
    frames = [np.full((96, 128, 3), 20 * i, np.uint8) for i in range(6)]
    path = tmp_path / f"clip.{ext}"
    _write_video(path, frames, codec=codec)
    with VideoReader(path, fps=None) as video:
        levels = [round(f.image.mean() / 20) for f in video]
    assert levels == list(range(6))


def test_reader_errors_name_the_file(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.mp4: .*empty \(0 bytes\)"):
        VideoReader(empty)
    junk = tmp_path / "junk.mov"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    with pytest.raises(InputError, match=r"junk\.mov: cannot read video"):
        VideoReader(junk)
    with pytest.raises(InputError, match="no such file"):
        VideoReader(tmp_path / "missing.mp4")
    with pytest.raises(InputError) as e:
        VideoReader(junk)
    assert "\n" not in str(e.value)


def test_reader_reports_a_video_cut_after_its_index(tmp_path):
    """An mp4 with its index at the front (faststart) still opens when cut, and decodes up
    to the cut without an error: shortfall() says so once the frames run out."""
    noise = np.random.default_rng(0).integers(0, 256, (60, 64, 64, 3), np.uint8)
    whole = tmp_path / "whole.mp4"
    with av.open(str(whole), "w", options={"movflags": "faststart"}) as c:
        s = c.add_stream("libx264", rate=15)
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
        for img in noise:  # noise: the bytes spread evenly over the frames
            c.mux(s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        c.mux(s.encode())
    data = whole.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with VideoReader(whole, fps=None) as video:
        assert sum(1 for _ in video) == 60 and video.shortfall() is None
    with VideoReader(cut, fps=None) as video:
        n = sum(1 for _ in video)
        assert 10 < n < 50 and video.decoded == n and video.expected_frames() == 60
        assert video.shortfall() == (f"{cut} is truncated or damaged after frame {n} (of ~60 "
                                     f"expected, {n / 15:.1f} s of 4.0 s)")
    with VideoReader(cut, fps=15) as video:  # a reader left before the end says nothing
        next(iter(video))
        assert video.shortfall() is None


# --- orientation -------------------------------------------------------------------------

def _matrix(a, b, c, d):
    m = np.zeros(9, np.int32)
    m[[0, 1, 3, 4]] = [a * 65536, b * 65536, c * 65536, d * 65536]
    m[8] = 1 << 30
    return m


def test_orientation_from_display_matrix_matches_ffmpeg_semantics():
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    # FFmpeg: displayed (x', y') = (a p + c q, b p + d q); 90 = counter-clockwise
    assert np.array_equal(orientation_from_matrix(_matrix(0, -1, 1, 0)).apply(img),
                          np.rot90(img, 1))
    assert np.array_equal(orientation_from_matrix(_matrix(0, 1, -1, 0)).apply(img),
                          np.rot90(img, -1))
    assert np.array_equal(orientation_from_matrix(_matrix(-1, 0, 0, -1)).apply(img),
                          np.rot90(img, 2))
    assert np.array_equal(orientation_from_matrix(_matrix(-1, 0, 0, 1)).apply(img),
                          img[:, ::-1])
    assert orientation_from_matrix(_matrix(1, 0, 0, 1)).apply(img) is img
    assert orientation_from_matrix(_matrix(0, -1, 1, 0)).degrees == 90


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_reader_applies_rotation_metadata(tmp_path, rotation):
    upright = np.zeros((48, 32, 3), np.uint8)  # portrait, bright block at the top left
    upright[:12, :8] = 255
    stored = np.ascontiguousarray(np.rot90(upright, -rotation // 90))  # as a phone stores it
    path = tmp_path / f"rot{rotation}.mp4"
    _write_video(path, [stored] * 3, rotation=rotation)
    with VideoReader(path, fps=None) as video:
        assert (video.info.width, video.info.height) == (32, 48)
        image = next(iter(video)).image
    assert image.shape == upright.shape
    assert image[:12, :8].mean() > 200 and image[12:, :].mean() < 40


# --- live frames -------------------------------------------------------------------------

def test_live_frames_drop_to_target_rate_and_check_input():
    images = [np.zeros((8, 8, 3), np.uint8)] * 30
    out = list(live_frames(images, fps=15, source_fps=30))
    assert len(out) == 15 and [f.index for f in out] == list(range(15))
    assert np.allclose([f.time for f in out], [2 * k / 30 for k in range(15)])
    assert len(list(live_frames(images, fps=None, source_fps=30))) == 30
    with pytest.raises(InputError, match="expected an RGB array"):
        list(live_frames([np.zeros((8, 8), np.uint8)]))
    with pytest.raises(InputError, match="uint8"):
        check_image(np.zeros((8, 8, 3), np.float32), "x")


# --- smoothing ---------------------------------------------------------------------------

def test_one_euro_removes_jitter_of_a_still_point_and_follows_a_move():
    rng = np.random.default_rng(0)
    f = OneEuroFilter()
    t = np.arange(150) / 15
    # MediaPipe's jitter: about 0.4 px in a 256 tube, i.e. 0.3 % of the face size
    still = 0.003 * rng.standard_normal((150, 1, 2))
    out = np.stack([f(x, ti) for x, ti in zip(still, t, strict=True)])
    assert out[15:].std() < 0.7 * still[15:].std()  # measured 0.62
    f.reset()
    step = np.where(t[:, None, None] < 5, 0.0, 0.3) + 0 * still  # the mouth opens
    out = np.stack([f(x, ti) for x, ti in zip(step, t, strict=True)])
    k = int(np.argmax(t >= 5))
    assert out[k + 2, 0, 0] > 0.25  # within 2 frames at 15 fps


# --- pose --------------------------------------------------------------------------------

def _symmetric_head(rng):
    """478 points with the pose pairs mirror-symmetric about x = 0 (a head seen frontally,
    x right, y down, z away)."""
    pts = rng.normal(0, 1, (478, 3))
    for a, b in LEFT_RIGHT_PAIRS:
        pts[a] = [-abs(pts[a, 0]) - 0.5, pts[a, 1], pts[a, 2]]
        pts[b] = [-pts[a, 0], pts[a, 1], pts[a, 2]]
    pts[FOREHEAD] = [0, -8.262, -4.482]  # canonical model, y and z flipped to image axes
    pts[152] = [0, 9.403, -4.264]
    return pts


def _rot(yaw, pitch, roll):
    cy, sy, cp, sp, cr, sr = (math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch),
                              math.cos(roll), math.sin(roll))
    ry = np.array([[cy, 0, -sy], [0, 1, 0], [sy, 0, cy]])  # +yaw: +x goes to +z
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])  # +pitch: +y (chin) goes to +z
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])  # +roll: +x goes to +y
    return rz @ ry @ rx


@pytest.mark.parametrize("yaw,pitch,roll", [(0.4, 0, 0), (-0.7, 0, 0), (0, 0.3, 0),
                                            (0, 0, -0.25), (0.3, -0.2, 0.1)])
def test_head_pose_recovers_known_rotations(yaw, pitch, roll):
    pts = _symmetric_head(np.random.default_rng(1)) @ _rot(yaw, pitch, roll).T
    got = head_pose(pts)
    assert got == pytest.approx([yaw, pitch, roll], abs=0.02)
    mirrored = pts * [-1, 1, 1]  # the image mirrored: MediaPipe swaps the labels too
    for a, b in LEFT_RIGHT_PAIRS:
        mirrored[[a, b]] = mirrored[[b, a]]
    assert head_pose(mirrored)[0] == pytest.approx(-yaw, abs=0.02)


def test_supervised_set_and_pose_pairs_are_mirror_symmetric():
    # checked against the mirror table the training code derived independently from
    # MediaPipe run on mirrored frames (horizontal-flip augmentation depends on it)
    from facecodec.sender.landmarks import IRIS_CENTRES, SUPERVISED_LANDMARKS
    from facecodec.training.mirror import MEDIAPIPE_MIRROR, flip_permutation

    assert len(SUPERVISED_LANDMARKS) == 33
    assert flip_permutation(SUPERVISED_LANDMARKS) is not None
    assert flip_permutation(IRIS_CENTRES).tolist() == [1, 0]
    assert all(MEDIAPIPE_MIRROR[a] == b for a, b in LEFT_RIGHT_PAIRS)


# --- tube --------------------------------------------------------------------------------

def _face(cx, cy, size):
    """Landmarks of a frontal face of ``size`` px centred on (cx, cy)."""
    pts = np.zeros((478, 3))
    rng = np.random.default_rng(2)
    pts[:, :2] = rng.uniform(-0.45, 0.45, (478, 2)) * size + [cx, cy]
    pts[10, :2], pts[152, :2] = [cx, cy - size / 2], [cx, cy + size / 2]
    pts[234, :2], pts[454, :2] = [cx - size * 0.45, cy], [cx + size * 0.45, cy]
    return pts


def test_tube_coordinates_round_trip_and_edges():
    box = Box(100, 50, 200)
    pts = np.array([[100.0, 50.0, 10.0], [300.0, 250.0, -4.0], [200.0, 150.0, 0.0]])
    tube = to_tube(pts, box)
    assert tube[:, :2].tolist() == [[-1, -1], [1, 1], [0, 0]]
    assert tube[0, 2] == pytest.approx(0.1)  # z on the x scale
    assert np.allclose(from_tube(tube, box), pts)


def test_tube_box_fixed_while_the_head_moves_a_little_then_recrops():
    tracker = TubeTracker(1280, 720)
    box0, new = tracker.update(_face(640, 360, 200))
    assert new and box0.size == 360 and 0 <= box0.x0 and box0.x0 + box0.size <= 1280
    for dx in range(0, 40, 4):  # a small sway: same box
        assert tracker.update(_face(640 + dx, 360 + dx / 2, 200)) == (box0, False)
    assert tracker.update(None) == (box0, False)  # no face: box kept
    box1, new = tracker.update(_face(900, 360, 200))  # the head left the box
    assert new and box1 != box0
    box2, new = tracker.update(_face(900, 360, 100))  # stepped back: face half the size
    assert new and box2.size == 180


def test_tube_box_recentres_on_a_head_that_moved_over_and_stayed():
    # still inside the box, but 0.15 of its side off-centre (the call clip held a face
    # there for a minute, and the generator drew it near its sources' place)
    for max_offset, recrops in ((None, False), (0.125, True)):
        tracker = TubeTracker(1280, 720, max_offset=max_offset)
        box0, _ = tracker.update(_face(640, 360, 200))
        box, new = tracker.update(_face(640 + 54, 360, 200))
        assert new == recrops and (box != box0) == recrops
        if recrops:  # the new box is centred on the head again
            assert box.x0 + box.size / 2 == pytest.approx(694, abs=1)
    # a live sender re-centres only on frames due intra anyway
    tracker = TubeTracker(1280, 720)
    box0, _ = tracker.update(_face(640, 360, 200))
    assert tracker.update(_face(694, 360, 200), recentre=False) == (box0, False)
    assert tracker.update(_face(694, 360, 200))[1]
    tracker = TubeTracker(256, 256)  # pinned at the frame's edges: never re-made
    box, _ = tracker.update(_face(128, 140, 200))
    assert tracker.update(_face(128 + 40, 140, 200)) == (box, False)


def test_tube_box_stays_inside_small_frames_and_edges_do_not_recrop():
    tracker = TubeTracker(256, 256)  # a clip that is already a face crop
    box, new = tracker.update(_face(128, 140, 200))
    assert new and box == Box(0, 0, 256)
    for dx in (-30, 20, 40):  # the face moves against the frame edges: nothing changes
        assert tracker.update(_face(128 + dx, 140, 200)) == (box, False)
    tracker = TubeTracker(410, 412)  # the box cannot be taller: 2 px short of the bottom
    box, _ = tracker.update(_face(205, 215, 230))
    assert box.size == 410 and tracker.update(_face(205, 300, 230)) == (box, False)
    b = make_box(_face(10, 10, 100), 640, 360, 1.8)
    assert b.x0 == 0 and b.y0 == 0 and b.size == 180


# --- source frames -----------------------------------------------------------------------

def test_select_sources_frontal_with_open_eyes_then_extremes():
    yaw = np.array([0.3, 0.01, 0.05, -0.4, 0.6, -0.2, 0.55, 0.0])
    eyes = np.array([0.05, 0.01, 0.05, 0.05, 0.05, 0.04, 0.05, 0.05])  # frame 1 blinks
    valid = np.array([True] * 7 + [False])  # frame 7 has no face
    assert select_sources(yaw, valid, eyes, n=3) == [2, 4, 3]
    assert select_sources(yaw, valid, eyes, n=1) == [2]
    five = select_sources(yaw, valid, eyes, n=5)
    assert five[:3] == [2, 4, 3] and len(set(five)) == 5
    with pytest.raises(InputError, match="no face"):
        select_sources(yaw, np.zeros(8, bool), eyes)


def test_a_head_turned_one_way_gets_sources_across_its_turn():
    # the call clip: yaw stays in -0.87..-0.28, so its most frontal frame is the yaw max;
    # the paper's rule sent that pose twice (frames 514 and 513 of 900)
    yaw = np.array([-0.5, -0.3, -0.29, -0.85, -0.6, -0.7, -0.45, -0.35])
    eyes, valid = np.full(8, 0.05), np.ones(8, bool)
    three = select_sources(yaw, valid, eyes, n=3)
    assert three == [2, 3, 4]  # frontal, the far extreme, the middle of the gap (-0.57)
    five = select_sources(yaw, valid, eyes, n=5)
    assert five[:3] == three and five[3:] == [6, 5]  # -0.45 (widest gap), then -0.7
    gaps = np.diff(np.sort(yaw[five]))
    assert gaps.min() > 0.09
    # a narrow span (0.15 rad: sway and tracker noise) keeps the paper's rule
    narrow = np.array([-0.5, -0.4, -0.39, -0.54, -0.45, -0.47, -0.42, -0.41])
    assert select_sources(narrow, valid, eyes, n=3) == [2, 1, 3]  # 1 next to 2: as the paper


def test_a_faded_or_flashed_frame_is_never_a_source():
    # an edited interview: a fade through white has the most frontal face of the clip
    rng = np.random.default_rng(0)
    tubes = rng.integers(40, 200, (8, 64, 64, 3)).astype(np.uint8)  # contrast ~35
    tubes[2] = (0.3 * tubes[2] + 170).astype(np.uint8)  # washed out: bright, flat
    tubes[4] = (0.5 * tubes[4]).astype(np.uint8)  # dark and flat
    stats = np.array([picture_stats(t) for t in tubes])
    yaw = np.array([0.3, 0.01, 0.0, -0.4, 0.6, -0.2, 0.55, 0.02])
    eyes, valid = np.full(8, 0.05), np.ones(8, bool)
    assert select_sources(yaw, valid, eyes, n=3) == [2, 4, 3]
    assert select_sources(yaw, valid, eyes, n=3, stats=stats) == [1, 6, 3]
    assert list(steady_mask(stats, valid)) == [True, True, False, True, False] + [True] * 3
    # a clip that is all alike (all faded) keeps its frames
    assert select_sources(yaw, valid, eyes, n=1, stats=np.tile(stats[2], (8, 1))) == [2]


class _Rec:
    def __init__(self, yaw, valid=True, eyes_open=0.05, new_box=False):
        self.yaw, self.valid, self.eyes_open, self.new_box = yaw, valid, eyes_open, new_box


def test_source_policy_adds_frames_at_new_yaw_ranges():
    policy = SourcePolicy(max_sources=3, margin=0.15)
    yaws = [0.4, 0.3, 0.05, 0.1, 0.2, 0.3, 0.45, 0.5, 0.45, 0.3, 0.0, -0.1, -0.3, -0.35, -0.2]
    updates = {i: policy.update(_Rec(y)) for i, y in enumerate(yaws)}
    added = {i: u for i, u in updates.items() if u is not None}
    # frontal frame 2; turn right peaks at frame 7 (0.5), added when turning back at 8;
    # turn left peaks at 13 (-0.35), added at 14
    assert sorted(added) == [2, 8, 14]
    assert [(u.record.yaw, u.slot, u.replaced) for u in added.values()] == [
        (0.05, 0, False), (0.5, 1, False), (-0.35, 2, False)]
    # a new tube box keeps the sources: they are in their own tube's coordinates
    assert policy.update(_Rec(0.0, new_box=True)) is None
    assert policy.yaws == [0.05, 0.5, -0.35]


def test_source_policy_replaces_the_most_redundant_source_when_full():
    policy = SourcePolicy(max_sources=3, margin=0.15)
    # a turn to the right in two steps (0.45, then 0.75), then one to the left
    yaws = [0.0, 0.3, 0.45, 0.4, 0.6, 0.75, 0.7, 0.3, -0.1, -0.3, -0.25]
    got = [(u.record.yaw, u.slot, u.replaced) for u in map(policy.update, map(_Rec, yaws))
           if u is not None]
    assert got == [(0.0, 0, False), (0.45, 1, False), (0.75, 2, False), (-0.3, 1, True)]
    assert policy.yaws == [0.0, -0.3, 0.75]


def test_source_policy_skips_closed_eyes_and_missing_faces():
    policy = SourcePolicy()
    assert policy.update(_Rec(0.0, valid=False)) is None
    assert policy.update(_Rec(0.0, eyes_open=0.05)) is not None
    assert policy.update(_Rec(0.5, eyes_open=0.01)) is None  # blink at the turn
    beyond = _Rec(0.3)  # the open-eyed frame beyond the range, kept until the turn stops
    assert policy.update(beyond) is None
    assert policy.update(_Rec(0.25)).record is beyond


# --- cache files -------------------------------------------------------------------------

def test_npy_appender_writes_loadable_mmap(tmp_path):
    path = tmp_path / "a.npy"
    w = _NpyAppender(path, (4, 4, 3))
    frames = [np.full((4, 4, 3), i, np.uint8) for i in range(1200)]
    for f in frames:
        w.append(f)
    assert w.finish() == 1200
    back = np.load(path, mmap_mode="r")
    assert back.shape == (1200, 4, 4, 3) and np.array_equal(back, np.stack(frames))


def test_manifest_resolution_person_and_repo_guard(tmp_path):
    shared = tmp_path / "shared"
    (shared / "data").mkdir(parents=True)
    m = shared / "data" / "manifest.csv"
    m.write_text("file,split,notes\ndata/clips/a_b.mp4,val,person=alice; remark\n"
                 "data/clips/c.mp4,train,\n")
    clips = read_manifest(m)
    assert clips[0].path == shared / "data" / "clips" / "a_b.mp4"
    assert (clips[0].name, clips[0].split, clips[0].person) == ("a_b", "val", "alice")
    assert clips[1].person == "c"
    repo = Path(__file__).resolve().parents[1]
    with pytest.raises(InputError, match="inside the repository"):
        prepare_data(m, repo / "cache", progress=False)
    assert clip_complete(tmp_path / "nothing") is None


def test_prepare_data_reports_unreadable_clips_and_writes_an_index(tmp_path):
    shared = tmp_path / "shared"
    (shared / "data" / "clips").mkdir(parents=True)
    (shared / "data" / "clips" / "broken.mp4").write_bytes(b"not a video")
    m = shared / "data" / "manifest.csv"
    m.write_text("file,split,notes\ndata/clips/broken.mp4,train,person=x\n")
    report = prepare_data(m, tmp_path / "cache", progress=False)
    assert report.failed and report.failed[0][0] == "broken"
    assert "cannot read video" in report.failed[0][1]
    index = json.loads((tmp_path / "cache" / "index.json").read_text())
    assert index == {"version": 1, "fps": 15, "clips": []}
