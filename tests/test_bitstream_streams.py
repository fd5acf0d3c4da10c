"""Quantization and the residual alphabet, with expected values."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from facecodec.bitstream.streams import EXPR, JAC, SUP, TABLES, StreamSpec
from facecodec.bitstream.symbols import ESCAPE, Alphabet


def test_quantization_expected_indices():
    # 10 bits on [-1, 1]: 1023 steps; -1 -> 0, 1 -> 1023, 0 -> 511.5 rounds to even 512
    assert EXPR.to_coded(np.array([-1.0, 1.0, 0.0] + [0.0] * 13))[:3].tolist() == [0, 1023, 512]
    # 16 bits on [-15, 15]: identity Jacobian entries 1 and 0
    q = JAC.to_coded(np.tile([1.0, 0.0, 0.0, 1.0], 10))
    assert q[:4].tolist() == [34952, 32768, 32768, 34952]
    # values outside the range are clipped, not wrapped
    assert EXPR.to_coded(np.full(16, 7.0)).tolist() == [1023] * 16


def test_points_are_sent_as_mean_plus_offsets():
    pts = np.array([[0.5, -0.25], [-0.5, 0.25]] + [[0.0, 0.0]] * 31)
    q = SUP.to_coded(pts)
    assert q.shape == (68,)
    # mean (0, 0) at 8 bits; offsets at 9 bits over [-2, 2]: same step as absolute values
    assert q[:2].tolist() == [128, 128]
    assert SUP.coded_bits.tolist() == [8, 8] + [9] * 66
    back = SUP.from_coded(q).reshape(-1, 2)
    assert np.abs(back - pts).max() <= 2 * (2 / 255)


@given(st.integers(1, 16), st.floats(-100, 100), st.floats(0.01, 100),
       st.integers(0, 2**31 - 1))
def test_quantization_error_is_at_most_half_a_step(bits, lo, span, seed):
    spec = StreamSpec("x", 8, lo, lo + span, bits)
    v = np.random.default_rng(seed).uniform(lo, lo + span, 8)
    err = np.abs(spec.from_coded(spec.to_coded(v)) - v)
    step = span / (2**bits - 1)
    assert err.max() <= step / 2 + 1e-6 * max(1, abs(lo) + span)


@pytest.mark.parametrize("exact,buckets", [(0, 0), (0, 3), (2, 5), (7, 1), (48, 12)])
def test_alphabet_is_a_bijection_up_to_its_range(exact, buckets):
    a = Alphabet(exact, buckets)
    v = np.arange(-a.max_abs - 3, a.max_abs + 4)
    sym, extra, nbits = a.encode(v)
    inside = np.abs(v) <= a.max_abs
    assert np.all(sym[~inside] == ESCAPE) and np.all(sym[inside] != ESCAPE)
    assert sym.max() < a.size
    for vi, s, e, nb in zip(v[inside], sym[inside], extra[inside], nbits[inside], strict=True):
        assert a.extra_bits(int(s)) == nb and 0 <= e < (1 << nb) if nb else e == 0
        assert a.decode(int(s), int(e)) == vi


def test_tables_are_well_formed():
    for name, table in TABLES.items():
        assert len(set(table.names)) == len(table.names), name
    with pytest.raises(ValueError):
        StreamSpec("Bad-name", 4, -1, 1, 8)
    with pytest.raises(ValueError):
        StreamSpec("odd", 3, -1, 1, 8, points=True)
