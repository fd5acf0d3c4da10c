"""One place per default (issue #21): values that two parts of the codec must agree on."""

from __future__ import annotations

import numpy as np

from facecodec.bitstream.header import intra_period_frames
from facecodec.codec import _resize
from facecodec.defaults import FIT_INTRA_PERIOD, FPS
from facecodec.eval.neural import to_eval_size
from facecodec.sender.prepare import CACHE_FPS


def test_priors_are_fitted_with_the_intra_period_the_codec_sends():
    """A prior's previous-delta term restarts at each intra frame: it is fitted with the
    spacing a stream at the default rate gets, on a cache at that rate."""
    assert FIT_INTRA_PERIOD == intra_period_frames(FPS) == intra_period_frames(CACHE_FPS)


def test_the_eval_scores_frames_resized_as_the_decoder_shows_them():
    rng = np.random.default_rng(0)
    for side in (64, 512):  # bicubic up, area down
        frames = rng.integers(0, 256, (2, side, side, 3), dtype=np.uint8)
        np.testing.assert_array_equal(to_eval_size(frames),
                                      np.stack([_resize(f, 256) for f in frames]))
