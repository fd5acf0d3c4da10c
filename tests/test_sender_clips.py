"""Sender front end on real clips (shared/data next to the repo) and on odd inputs made
with PyAV in tmp_path. Short excerpts at 15 fps keep the file within ~30 s on 2 cores.

Nothing is written into the repository: excerpts and caches go to tmp_path.
"""

from __future__ import annotations

import csv
import functools
import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from facecodec.errors import InputError
from facecodec.sender.frontend import FrontEnd, stack
from facecodec.sender.prepare import prepare_data
from facecodec.sender.sources import SourcePolicy, eyes_open_mask, select_sources
from facecodec.sender.video import Frame, VideoReader

SHARED = Path(__file__).resolve().parents[2] / "shared"
CLIPS = SHARED / "data" / "clips"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CLIPS.is_dir(), reason=f"{CLIPS} not found: the real-clip tests "
                       "need the shared data set next to the repository"),
]


@functools.cache
def excerpt(name: str, seconds: float, fps: float | None = 15) -> tuple[Frame, ...]:
    """The first ``seconds`` of a clip as upright frames (cached: tests share them)."""
    frames = []
    with VideoReader(CLIPS / f"{name}.mp4", fps=fps) as video:
        for f in video:
            if f.time >= seconds:
                break
            frames.append(f)
    return tuple(frames)


def track(frames, **kw) -> dict[str, np.ndarray]:
    with FrontEnd(**kw) as fe:
        return stack(fe.run(frames), tubes=True)


def write_video(path: Path, images, fps: int = 15, rotation: int | None = None) -> Path:
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps, options={"crf": "18"})
        s.height, s.width = images[0].shape[:2]
        s.pix_fmt = "yuv420p"
        if rotation is not None:
            s.set_display_rotation(rotation)
        for img in images:
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img),
                                                         format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def manifest_row(name: str) -> dict:
    with (SHARED / "data" / "manifest.csv").open() as f:
        return next(r for r in csv.DictReader(f) if Path(r["file"]).stem == name)


@pytest.fixture(scope="module")
def wojtek() -> dict[str, np.ndarray]:
    """A clip with deliberate head turns (manifest yaw -0.35 .. 0.72), whole, 15 fps."""
    return track(excerpt("mtrack_wojtek", 60))


# --- landmarks ---------------------------------------------------------------------------

def test_landmarks_found_on_98_percent_of_frames():
    # small faces, profile-ish heads, 160 px crops, portrait and 720x404 frames
    names = ["visualvoice_noisy_restaurant", "icpr_ffpp_004", "deepavsr_00001", "lp_s20",
             "spectre_MEAD_W015_level_1_neutral_030", "spectre_LRS3_QoT0S2vu9m4_00002"]
    found = {n: track(excerpt(n, 2.0))["valid"] for n in names}
    rate = np.concatenate(list(found.values())).mean()
    assert rate >= 0.98, {n: v.mean() for n, v in found.items()}
    assert all(v.mean() >= 0.9 for v in found.values())


def test_supervised_landmarks_sit_on_the_face(wojtek):
    sup, iris = wojtek["sup"], wojtek["iris"]
    assert sup.shape[1:] == (33, 2) and sup.dtype == np.float32
    assert np.abs(sup).max() < 0.95  # inside the tube, not clipped
    # image order on a frontal frame: right eye corner 33 left of the iris 468, etc.
    f = int(np.argmin(np.abs(wojtek["yaw"])))
    lm = wojtek["landmarks"][f]
    assert lm[33, 0] < lm[468, 0] < lm[133, 0] < lm[362, 0] < lm[473, 0] < lm[263, 0]
    assert lm[10, 1] < lm[168, 1] < lm[1, 1] < lm[13, 1] < lm[14, 1] < lm[152, 1]
    assert np.allclose(iris[f], lm[[468, 473], :2])


def test_smoothing_reduces_jitter_and_keeps_mouth_motion():
    frames = excerpt("edtalk_expression_source", 5.0)
    raw, smooth = track(frames, smoothing=False), track(frames)
    lr, ls = raw["landmarks"] * 128, smooth["landmarks"] * 128  # pixels of the 256 tube

    def jitter(lm):  # frame-to-frame acceleration of distances that do not deform
        return np.mean([np.abs(np.diff(np.linalg.norm(lm[:, i, :2] - lm[:, j, :2], axis=1),
                                       2)).mean() for i, j in [(168, 1), (10, 168), (1, 10)]])

    def mouth_motion(lm):
        return np.abs(np.diff(lm[:, 14, 1] - lm[:, 13, 1])).mean()

    assert jitter(ls) < 0.85 * jitter(lr)
    assert mouth_motion(ls) > 0.9 * mouth_motion(lr)
    assert np.abs(ls - lr)[:, :, :2].mean() < 0.5  # no visible lag (px of the tube)


# --- tube --------------------------------------------------------------------------------

def test_tube_box_stays_fixed_on_a_steady_clip():
    rec = track(excerpt("spectre_MEAD_W015_level_1_neutral_030", 4.0))
    assert rec["valid"].all()
    assert (rec["segment"] == 0).all() and rec["new_box"].tolist() == [True] + [False] * (
        len(rec["valid"]) - 1)
    assert (rec["box"] == rec["box"][0]).all()
    x0, y0, size = rec["box"][0]
    assert 0 <= x0 and x0 + size <= 720 and 0 <= y0 and y0 + size <= 404
    assert rec["tube"].shape[1:] == (256, 256, 3) and rec["tube"].dtype == np.uint8


# --- pose and source frames --------------------------------------------------------------

def test_yaw_changes_sign_when_the_video_is_mirrored():
    frames = excerpt("spectre_LRS3_QoT0S2vu9m4_00002", 2.0)  # turned ~0.8 rad to the right
    mirrored = [Frame(np.ascontiguousarray(f.image[:, ::-1]), f.time, f.index) for f in frames]
    a, b = track(frames), track(mirrored)
    assert np.median(a["yaw"]) > 0.5 and np.median(b["yaw"]) < -0.5
    assert np.median(np.abs(a["yaw"] + b["yaw"])) < 0.1
    assert np.median(np.abs(a["roll"] + b["roll"])) < 0.05


def test_yaw_range_agrees_with_the_manifest(wojtek):
    row = manifest_row("mtrack_wojtek")
    yaw = wojtek["yaw"][wojtek["valid"]]
    assert yaw.min() == pytest.approx(float(row["yaw_min"]), abs=0.1)
    assert yaw.max() == pytest.approx(float(row["yaw_max"]), abs=0.1)


def test_source_frames_are_frontal_and_the_yaw_extremes(wojtek):
    yaw, valid, eyes = wojtek["yaw"], wojtek["valid"], wojtek["eyes_open"]
    front, right, left = select_sources(yaw, valid, eyes, n=3)
    opened = eyes_open_mask(eyes, valid)
    assert opened[[front, right, left]].all()
    assert abs(yaw[front]) == pytest.approx(np.abs(yaw[opened]).min())
    assert yaw[right] == pytest.approx(yaw[opened].max()) and yaw[right] > 0.5
    assert yaw[left] == pytest.approx(yaw[opened].min()) and yaw[left] < -0.25


def test_live_source_policy_follows_the_head_turns(wojtek):
    class R:  # the policy reads attributes of records
        def __init__(self, i):
            self.yaw, self.valid = float(wojtek["yaw"][i]), bool(wojtek["valid"][i])
            self.eyes_open, self.new_box, self.i = float(wojtek["eyes_open"][i]), False, i

    policy = SourcePolicy(max_sources=3, margin=0.15)
    updates = [u for u in (policy.update(R(i)) for i in range(len(wojtek["yaw"]))) if u]
    assert updates[0].slot == 0 and abs(updates[0].record.yaw) <= 0.15
    assert len(policy.yaws) == 3  # at the end: frontal, and both sides of the turns
    assert max(policy.yaws) > 0.5 and min(policy.yaws) < -0.2


# --- odd inputs --------------------------------------------------------------------------

def test_no_face_flags_frames_then_raises(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (8, 120, 160, 3), np.uint8)
    path = write_video(tmp_path / "noise.mp4", list(noise))
    records = []
    with FrontEnd() as fe, pytest.raises(InputError, match=r"no face found in .*noise\.mp4"):
        for r in fe.video(path):
            records.append(r)
    assert len(records) == 8 and not any(r.valid for r in records)
    assert records[0].tube.shape == (256, 256, 3)


def test_two_faces_keep_following_the_same_person():
    a, b = excerpt("dpe_s", 2.0), excerpt("dpe_d", 2.0)  # two people, 256x256 each
    pair = [np.hstack([x.image, y.image]) for x, y in zip(a, b, strict=True)]
    alone = {"dpe_s": track(a), "dpe_d": track(b)}

    def followed_side(rec):
        centre = rec["box"][:, 0] + rec["box"][:, 2] / 2
        side = centre[rec["valid"]] > 256  # which half the followed face is in
        assert side.all() or not side.any(), "switched to the other person"
        return bool(side[0])

    def same_person(rec, right):
        ref = alone["dpe_d" if right else "dpe_s"]["sup"]
        ok = rec["valid"]
        mouth = rec["sup"][ok, 32, 1] - rec["sup"][ok, 31, 1]  # landmarks 14 - 13
        return np.corrcoef(mouth, ref[ok, 32, 1] - ref[ok, 31, 1])[0, 1] > 0.9

    for faces in (2, 1):
        rec = track([Frame(p, x.time, x.index) for p, x in zip(pair, a, strict=True)],
                    max_num_faces=faces)
        assert rec["valid"].all()
        assert same_person(rec, followed_side(rec))

    # the followed person is hidden for 5 frames: those frames are flagged, and tracking
    # comes back on that person, not on the other one who stayed in view
    right = followed_side(rec)
    hidden = [p.copy() for p in pair]
    for p in hidden[10:15]:
        p[:, 256:] = 0 if right else p[:, 256:]
        p[:, :256] = p[:, :256] if right else 0
    rec = track([Frame(p, x.time, x.index) for p, x in zip(hidden, a, strict=True)],
                max_num_faces=2)
    assert not rec["valid"][10:15].any() and rec["valid"][15:].all()
    assert followed_side(rec) == right and same_person(rec, right)


def test_one_frame_video(tmp_path):
    path = write_video(tmp_path / "one.mp4", [excerpt("dpe_s", 0.1)[0].image])
    with FrontEnd() as fe:
        records = list(fe.video(path))
    assert len(records) == 1 and records[0].valid and records[0].new_box


def test_rotated_phone_video_is_read_upright(tmp_path):
    upright = excerpt("lp_s20", 1.0)  # 380x720 portrait
    stored = [np.rot90(f.image, -1) for f in upright]  # sensor orientation: landscape
    path = write_video(tmp_path / "phone.mp4", stored, rotation=90)
    with VideoReader(path) as video:
        assert (video.info.width, video.info.height, video.info.rotation) == (380, 720, 90)
    with FrontEnd() as fe:
        got = stack(fe.video(path))
    ref = track(upright)
    assert got["valid"].all()
    assert np.abs(got["box"] - ref["box"]).max() <= 4  # same crop, up to coding noise
    assert np.abs(got["sup"] - ref["sup"]).mean() < 0.01
    assert np.abs(got["yaw"] - ref["yaw"]).max() < 0.05


def test_variable_frame_rate_clip_is_resampled_on_timestamps():
    with VideoReader(CLIPS / "vrt_1.mp4", fps=15) as video:  # 22.13 fps average, VFR
        times = [f.time for f in video]
        duration = video.info.duration
    assert np.allclose(np.diff(times), 1 / 15)
    assert abs(len(times) - duration * 15) <= 1


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "facecodec", *args], capture_output=True,
                          text=True, timeout=120)


def test_cli_errors_are_one_line(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    r = _cli("track", str(empty), "--out", str(tmp_path / "t.npz"))
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        f"facecodec: error: {empty}: cannot read video: the file is empty (0 bytes)"]
    noise = np.random.default_rng(1).integers(0, 256, (3, 96, 128, 3), np.uint8)
    path = write_video(tmp_path / "noise.mp4", list(noise))
    r = _cli("track", str(path), "--out", str(tmp_path / "t.npz"))
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [f"facecodec: error: no face found in {path}"]


# --- the training cache ------------------------------------------------------------------

def test_prepare_data_writes_the_cache_contract_and_resumes(tmp_path):
    shared = tmp_path / "shared"
    clips = shared / "data" / "clips"
    clips.mkdir(parents=True)
    write_video(clips / "talk_a.mp4", [f.image for f in excerpt("dpe_s", 1.5, fps=None)], 25)
    write_video(clips / "talk_b.mp4", [f.image for f in excerpt("lp_s20", 1.0, fps=None)], 30)
    noise = np.random.default_rng(2).integers(0, 256, (4, 64, 64, 3), np.uint8)
    write_video(clips / "empty_room.mp4", list(noise))
    manifest = shared / "data" / "manifest.csv"
    manifest.write_text("file,split,notes\n"
                        "data/clips/talk_a.mp4,train,person=ann; a remark\n"
                        "data/clips/empty_room.mp4,train,person=nobody\n"
                        "data/clips/talk_b.mp4,val,person=bob\n")
    out = tmp_path / "cache"
    report = prepare_data(manifest, out, progress=False)
    assert report.done == ["talk_a", "talk_b"]
    assert [n for n, _ in report.failed] == ["empty_room"]
    assert "no face found" in report.failed[0][1]

    index = json.loads((out / "index.json").read_text())
    assert index["version"] == 1 and index["fps"] == 15
    assert [(c["name"], c["split"], c["person"]) for c in index["clips"]] == [
        ("talk_a", "train", "ann"), ("talk_b", "val", "bob")]
    a = index["clips"][0]
    assert a["src_fps"] == pytest.approx(25.0) and a["frames"] in (22, 23)
    d = out / "talk_a"
    t256, t128 = np.load(d / "tube256.npy", mmap_mode="r"), np.load(d / "tube128.npy",
                                                                   mmap_mode="r")
    t = a["frames"]
    assert t256.shape == (t, 256, 256, 3) and t256.dtype == np.uint8
    assert t128.shape == (t, 128, 128, 3) and t128.dtype == np.uint8
    down = t256[3].reshape(128, 2, 128, 2, 3).mean(axis=(1, 3))
    assert np.abs(down - t128[3]).max() <= 1  # area downscale
    with np.load(d / "meta.npz") as z:
        shapes = {k: (z[k].shape, z[k].dtype.str) for k in z.files}
        assert shapes == {
            "sup": ((t, 33, 2), "<f4"), "iris": ((t, 2, 2), "<f4"),
            "landmarks": ((t, 478, 3), "<f4"), "yaw": ((t,), "<f4"), "pitch": ((t,), "<f4"),
            "roll": ((t,), "<f4"), "valid": ((t,), "|b1"), "box": ((t, 3), "<f4"),
            "segment": ((t,), "<i4"), "eyes_open": ((t,), "<f4")}
        assert z["valid"].all() and z["segment"][0] == 0
        assert np.abs(z["sup"]).max() <= 1 and np.abs(z["landmarks"][..., :2]).max() <= 1

    again = prepare_data(manifest, out, progress=False)
    assert again.done == [] and again.kept == ["talk_a", "talk_b"]
    assert json.loads((out / "index.json").read_text()) == index
