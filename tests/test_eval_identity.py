"""The identity distance of facecodec eval (dlib face descriptors) on known pairs: real faces
of two val people read in place from shared/data through the sender, never copied."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from eval_helpers import moving_clip

from facecodec.eval.identity import FaceIdentity, sample_indices, unavailable_reason
from facecodec.eval.metrics import ClipScore
from facecodec.eval.report import jsonable
from facecodec.eval.reuse import reusable

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_dlib = pytest.mark.skipif(unavailable_reason() is not None,
                                reason=f"{unavailable_reason()}")
needs_clips = pytest.mark.skipif(not (SHARED / "manifest.csv").is_file(),
                                 reason="needs the shared clips next to the repo")


@pytest.fixture(scope="module")
def identity() -> FaceIdentity:
    return FaceIdentity()


@pytest.fixture(scope="module")
def faces() -> dict[str, np.ndarray]:
    """12 face-tube frames of each of two val people (different persons in the manifest)."""
    from facecodec.eval.clips import manifest_clips

    refs = {r.name: r for r in manifest_clips(SHARED / "manifest.csv", "val", None,
                                              ["lp_d7", "tpsmm_driving"])}
    return {name: ref.load(12).frames for name, ref in refs.items()}


def jpeg(frames: np.ndarray, quality: int) -> np.ndarray:
    def one(f: np.ndarray) -> np.ndarray:
        ok, buf = cv2.imencode(".jpg", f[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        assert ok
        return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]

    return np.stack([one(f) for f in frames])


def test_sample_indices_spread_over_the_clip() -> None:
    assert sample_indices(100, 5).tolist() == [0, 25, 50, 74, 99]
    assert sample_indices(3, 12).tolist() == [0, 1, 2]


@needs_dlib
@needs_clips
def test_distance_orders_known_pairs(identity, faces) -> None:
    me, other = faces["lp_d7"], faces["tpsmm_driving"]
    ref = identity.reference(me)
    assert all(box is not None for box in ref[1])  # a face in every sampled frame
    assert identity.distance(me, ref) == 0.0  # deterministic: the same frames give 0
    near, far = identity.distance(jpeg(me, 90), ref), identity.distance(jpeg(me, 10), ref)
    stranger = identity.distance(other, ref)
    # docs/environment.md: JPEG q10 of the same frame ~0.3, other people 0.46-0.93
    assert 0 < near < 0.15 < far < 0.5
    assert stranger > 0.6 > far  # dlib's same-person threshold lies between
    # the person held still is still the person: identity is not a motion metric
    assert identity.distance(np.repeat(me[:1], len(me), 0), ref) < 0.5


@needs_dlib
def test_no_face_in_the_original_gives_nan(identity) -> None:
    pan = moving_clip(6)
    ref = identity.reference(pan)
    assert all(box is None for box in ref[1])
    assert math.isnan(identity.distance(pan, ref))


def _row(identity: float | None) -> dict:
    row = dict(clip="c", method="x264", target_kbps=10.0, setting={"crf": 40}, reached=True,
               frames=4, seconds=1.0, bits_total=1, bits_first=1, bits_per_frame=1.0,
               kbps_steady=1.0, kbps_all=1.0, lpips=0.1, psnr=30.0, ms_ssim=0.9, nme=0.02,
               identity=identity, face_found=1.0, motion_ratio=1.0, motion_error=0.0,
               flicker=0.0, eye_error=0.01, mouth_open_error=0.01, mouth_width_error=0.01,
               eye_corr=0.9, mouth_open_corr=0.9, mouth_width_corr=0.5, blink_frames=3,
               blink_hits=2, false_blinks=0, encode_fps=1.0, decode_fps=1.0)
    if identity is None:
        del row["identity"]  # a results.json from before the metric
    return row


def test_rows_scored_without_the_identity_metric_are_run_again() -> None:
    settings, targets = {"x264": {"preset": "medium"}}, {"x264": [10.0]}
    now = "dlib 20.0.1 ResNet face descriptor L2, 12 frames per clip"
    old = {"max_frames": None, "methods": jsonable(settings), "scores": [_row(None)]}
    kept = reusable(old, settings, targets, ["c"], None, identity=None)
    assert math.isnan(kept["x264"]["c", 10.0].identity)  # NaN, not a crash, without it
    assert reusable(old, settings, targets, ["c"], None, identity=now) == {}
    new = {**old, "identity": now, "scores": [_row(0.25)]}
    score = reusable(new, settings, targets, ["c"], None, identity=now)["x264"]["c", 10.0]
    assert isinstance(score, ClipScore) and score.identity == 0.25
    assert reusable(new, settings, targets, ["c"], None, identity=now + " v2") == {}
