"""The dead zone on the learned values: bounded error, no lag past the threshold, fewer
distinct values (hence fewer bits)."""

import numpy as np
import pytest

from facecodec.sender.deadband import UNIT_THRESHOLDS, Deadband


def walk(seed: int, t: int = 200) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"sup": rng.normal(0, 0.01, (t, 66)).cumsum(0),
            "unsup": rng.normal(0, 0.003, (t, 20)).cumsum(0),
            "jac": 1 + rng.normal(0, 0.01, (t, 40)).cumsum(0),
            "expr": np.tanh(rng.normal(0, 0.02, (t, 16)).cumsum(0))}


def test_strength_zero_is_identity():
    v = walk(0)
    out = Deadband(0).stream(v)
    for k in v:
        assert np.array_equal(out[k], v[k])


@pytest.mark.parametrize("strength", [1.0, 4.0, 16.0])
def test_error_bounded_and_values_held(strength):
    v = walk(1)
    out = Deadband(strength).stream(v)
    assert np.array_equal(out["sup"], v["sup"])  # the tracker's landmarks are not touched
    for k, unit in UNIT_THRESHOLDS.items():
        thr = unit * strength
        err = np.abs(out[k] - v[k])
        assert err.max() <= thr + 1e-12
        assert np.array_equal(out[k][0], v[k][0])
        # the input leaves the zone around the last value sent: sent at once, no lag;
        # else the last value is held
        moved = np.abs(v[k][1:] - out[k][:-1]) > thr
        assert np.array_equal(out[k][1:][moved], v[k][1:][moved])
        assert np.array_equal(out[k][1:][~moved], out[k][:-1][~moved])
        assert 0 < moved.mean() < 1


def test_stronger_zone_sends_fewer_changes():
    v = walk(2)
    changes = [int(sum(np.count_nonzero(np.diff(Deadband(s).stream(v)[k], axis=0))
                       for k in UNIT_THRESHOLDS)) for s in (0, 2, 8)]
    assert changes[0] > changes[1] > changes[2]


def test_frame_by_frame_equals_stream_and_reset():
    v = walk(3, 50)
    band = Deadband(4)
    frames = [band({k: x[t] for k, x in v.items()}) for t in range(50)]
    whole = Deadband(4).stream(v)
    for k in v:
        assert np.array_equal(np.stack([f[k] for f in frames]), whole[k])
    band.reset()
    first = band({k: x[10] for k, x in v.items()})
    assert all(np.array_equal(first[k], v[k][10]) for k in v)


def test_negative_strength_is_an_error():
    with pytest.raises(ValueError, match="strength"):
        Deadband(-1)
