"""The shipped landmark prior on the shipped example track (a held-out clip's landmarks),
and the README's first command on the shipped model."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facecodec.bitstream.prior import Prior, prior_dirs
from facecodec.bitstream.report import analyse
from facecodec.bitstream.values import coded_clip, decode_values, encode_values, load_values

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "landmarks_track.npz"
FRAMING_BITS = 32  # chunk kind + 1-byte length + CRC16 of an inter packet (docs/format.md)


@pytest.fixture(scope="module")
def prior() -> Prior:
    return Prior.load(prior_dirs()[-1] / "landmarks.json")


@pytest.mark.parametrize("packet_frames", [1, 10])
def test_measured_bits_are_the_priors_cross_entropy_plus_framing(tmp_path, prior, packet_frames):
    fps, values = load_values(EXAMPLE, prior.table)
    path = tmp_path / "x.fcs"
    encode_values(values, fps, prior, path, intra_period=30, packet_frames=packet_frames)
    s = analyse(path).summary()
    n = s["frames"]
    ideal = sum(prior.code_length(coded_clip(prior.table, values), 30)[k].sum()
                for k in prior.table.names) / n
    # the coder spends what the prior says, symbol for symbol ...
    assert s["payload_bits_per_frame"] == pytest.approx(ideal, rel=1e-9)
    # ... plus per packet its framing and the range coder's final word (<= 32 bits), plus
    # the frame number of intra packets
    packets = -(-n // packet_frames)
    overhead = s["overhead_bits_per_frame"] * n / packets
    # format 2.0: every packet's frame number (1-2 bytes here), an inter packet's reference
    # check, the frame count of a multi-frame packet, a second length byte past 127 bytes
    assert FRAMING_BITS + 8 <= overhead <= FRAMING_BITS + 32 + 16 + 8 + 8 * (packet_frames > 1) \
        + 8 * (packet_frames > 1)
    _, decoded, _ = decode_values(path, prior=prior)
    for spec in prior.table:
        want = np.stack([spec.from_coded(spec.to_coded(v)) for v in values[spec.name]])
        np.testing.assert_array_equal(decoded[spec.name], want)


def test_shipped_prior_codes_a_held_out_track_in_budget(prior):
    """The example is a val clip, which the prior never saw. One static table per stream
    costs 160 bits/frame of payload on the val split, the shipped prior 120 (fit-priors);
    a prior that lost its prediction or contexts would land near the former."""
    fps, values = load_values(EXAMPLE, prior.table)
    clip = coded_clip(prior.table, values)
    ours = sum(v.sum() for v in prior.code_length(clip, 30).values()) / len(clip["sup"])
    assert ours < 150, ours  # 119.9 bits/frame on the whole val split (fit-priors)


def test_readme_demo_runs(tmp_path):
    """The README's first command, on the shipped model and the shipped example photo."""
    r = subprocess.run([sys.executable, "-m", "facecodec", "demo", "--out", str(tmp_path),
                        "--no-progress"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "sources at frames" in r.stdout and "bits/frame" in r.stdout
    for name in ("input.mp4", "example.fcs", "decoded.mp4", "side_by_side.mp4", "bitrate.md"):
        assert (tmp_path / name).stat().st_size > 0
