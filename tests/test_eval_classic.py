"""Classic codecs through PyAV: rate search hits a target, bit accounting, decoding."""

from __future__ import annotations

import numpy as np
import pytest
from eval_helpers import moving_clip

from facecodec.eval.base import EvalClip
from facecodec.eval.classic import (
    CODECS,
    ClassicCodec,
    Trial,
    annexb_units,
    encode,
    search_quality,
)
from facecodec.eval.metrics import psnr

FPS = 15.0


@pytest.fixture(scope="module")
def clip() -> EvalClip:
    return EvalClip("synthetic", moving_clip(24, step=1))


def fake_trial(rate_at_q):
    """A memo-free trial function with a chosen rate curve, counting its calls."""
    calls = []

    def trial(q: float) -> Trial:
        calls.append(q)
        kbps = rate_at_q(q)
        bits = np.full(15, kbps * 1000 / FPS, dtype=np.float64)
        return Trial(q, [], bits, 0.0)

    return trial, calls


def test_search_bisects_to_the_target() -> None:
    trial, calls = fake_trial(lambda q: 100.0 * 2 ** (-q / 6))  # x264's rule of thumb
    tr, reached = search_quality(trial, 10.0, FPS, 0.0, 51.0, integer=False, rtol=0.01)
    assert reached and abs(tr.kbps(FPS) / 10.0 - 1) <= 0.01
    assert len(calls) <= 14


def test_search_reports_an_unreachable_target() -> None:
    trial, calls = fake_trial(lambda q: 50.0 - q / 2)  # 18.5 kbps at the coarsest
    tr, reached = search_quality(trial, 5.0, FPS, 0.0, 63.0, integer=True)
    assert not reached and tr.q == 63.0 and calls == [63.0]


def test_search_integer_knob_returns_the_nearest() -> None:
    trial, _ = fake_trial(lambda q: 100.0 * 2 ** (-q / 3))
    tr, reached = search_quality(trial, 10.0, FPS, 0.0, 51.0, integer=True, rtol=0.0)
    assert reached and tr.q == int(tr.q)
    assert abs(np.log2(tr.kbps(FPS) / 10.0)) <= 0.5 / 3 + 1e-9  # within half a step


@pytest.mark.parametrize("codec,tol", [("x264", 0.06), ("x265", 0.2), ("svtav1", 0.2)])
def test_codec_hits_a_target_rate(clip: EvalClip, codec: str, tol: float) -> None:
    method = ClassicCodec(codec)
    enc = method.run(clip, 40.0)
    enc.check(clip, codec)
    kbps = enc.frame_bits.sum() / clip.seconds / 1000
    assert enc.reached and abs(kbps / 40.0 - 1) <= tol, (codec, kbps, enc.setting)
    assert enc.frame_bits[0] == enc.frame_bits.max()  # the intra frame
    assert 20 < psnr(enc.frames, clip.frames) < 50


def test_sei_banner_is_not_counted(clip: EvalClip) -> None:
    tr = encode(CODECS["x264"], clip.frames[:3], 30.0, FPS)
    types = [u[0] & 0x1F for p in tr.payloads for u in annexb_units(p)]
    assert 6 not in types and 7 in types and 5 in types  # no SEI; SPS and IDR kept


def test_memoised_search_reuses_encodes(clip: EvalClip) -> None:
    method = ClassicCodec("x264")
    method.run(clip, 30.0)
    n = len(method._memo)
    method.run(clip, 30.0)
    assert len(method._memo) == n
