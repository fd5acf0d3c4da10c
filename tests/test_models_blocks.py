"""Geometry helpers of facecodec/models/blocks.py: exact properties, not just shapes."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from facecodec.models.blocks import (
    BICUBIC_TAPS,
    AntiAliasDownsample,
    Hourglass,
    InvertedResidual,
    bicubic_by_bilinear_taps,
    combine_motions,
    identity_jacobians,
    inverse_2x2,
    keypoint_heatmaps,
    make_coordinate_grid,
    resize_flow,
    sparse_motions,
    spatial_softmax_keypoints,
    warp,
)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-3, 3), min_size=4, max_size=4))
def test_inverse_2x2_matches_linalg(entries: list[float]) -> None:
    m = torch.tensor(entries, dtype=torch.float64).reshape(2, 2)
    if abs(torch.linalg.det(m)) < 1e-2:
        return
    assert torch.allclose(inverse_2x2(m), torch.linalg.inv(m), atol=1e-9)


def test_inverse_2x2_singular_is_finite() -> None:
    assert torch.isfinite(inverse_2x2(torch.zeros(3, 2, 2))).all()


def test_coordinate_grid_corners_and_order() -> None:
    g = make_coordinate_grid(4, 8)
    assert g.shape == (4, 8, 2)
    # pixel centres, -1/+1 on the outer edges (the tube convention, align_corners=False)
    assert g[0, 0].tolist() == [-0.875, -0.75] and g[-1, -1].tolist() == [0.875, 0.75]
    assert g[0, -1].tolist() == [0.875, -0.75]  # x varies along width


def test_heatmap_peaks_at_keypoint() -> None:
    grid = make_coordinate_grid(33, 33)
    kp = torch.stack([grid[8, 24], grid[32, 0]]).unsqueeze(0)
    hm = keypoint_heatmaps(kp, 33, 33, 0.01)
    assert hm.shape == (1, 2, 33, 33)
    for k in range(2):
        idx = hm[0, k].argmax()
        assert torch.allclose(grid.reshape(-1, 2)[idx], kp[0, k])
        assert abs(float(hm[0, k].max()) - 1.0) < 1e-6


def test_spatial_softmax_centre_of_mass() -> None:
    logits = torch.full((1, 1, 9, 9), -1e4)
    logits[0, 0, 2, 7] = 0.0
    kp, prob = spatial_softmax_keypoints(logits, 0.1)
    assert torch.allclose(kp[0, 0], make_coordinate_grid(9, 9)[2, 7])
    assert torch.allclose(prob.sum(dim=(2, 3)), torch.ones(1, 1))
    kp, _ = spatial_softmax_keypoints(torch.randn(2, 5, 8, 8) * 50, 0.1)
    assert kp.abs().max() <= 1.0


def test_sparse_motion_maps_destination_keypoint_to_source() -> None:
    src = torch.tensor([[[0.2, 0.1], [-0.3, 0.4]]])
    dst = torch.tensor([[[0.0, 0.0], [0.4, -0.4]]])
    jac_s = torch.tensor([[[[1.2, 0.1], [0.0, 0.9]], [[1.0, 0.0], [0.0, 1.0]]]])
    jac_d = identity_jacobians(dst)
    m = sparse_motions(5, 5, src, dst, jac_s, jac_d)  # grid: -0.8, -0.4, 0, 0.4, 0.8
    assert m.shape == (1, 3, 25, 2)
    grid = make_coordinate_grid(5, 5).reshape(25, 2)
    assert torch.allclose(m[0, 0], grid)  # background = identity
    for k in range(2):
        at = ((grid - dst[0, k]).abs().sum(-1) < 1e-6).nonzero()[0, 0]
        assert torch.allclose(m[0, k + 1, at], src[0, k], atol=1e-6)
    # the local map is affine with matrix J_s J_d^-1: one grid step in x moves by J_s[:, 0]
    at = ((grid - dst[0, 0]).abs().sum(-1) < 1e-6).nonzero()[0, 0]
    step = m[0, 1, at + 1] - m[0, 1, at]
    assert torch.allclose(step, jac_s[0, 0, :, 0] * 0.4, atol=1e-6)


def test_combine_motions_is_a_convex_blend() -> None:
    motions = torch.randn(2, 3, 16, 2)
    flow, mask = combine_motions(motions, torch.randn(2, 3, 4, 4))
    assert flow.shape == (2, 4, 4, 2)
    assert torch.allclose(mask.sum(1), torch.ones(2, 4, 4), atol=1e-6)
    one_hot = torch.full((2, 3, 4, 4), -1e4)
    one_hot[:, 2] = 0
    flow, _ = combine_motions(motions, one_hot)
    assert torch.allclose(flow.reshape(2, 16, 2), motions[:, 2])


def test_identity_flow_warps_to_itself_and_resizes_exactly() -> None:
    x = torch.rand(2, 3, 8, 8)
    ident = make_coordinate_grid(8, 8).expand(2, 8, 8, 2)
    assert torch.allclose(warp(x, ident), x, atol=1e-6)
    big = resize_flow(make_coordinate_grid(4, 4).expand(1, 4, 4, 2), 32, 32)
    assert torch.allclose(big[0], make_coordinate_grid(32, 32), atol=1e-6)


def test_bicubic_warp_keeps_detail_that_bilinear_blurs() -> None:
    """Detail at a quarter of the sampling rate, shifted by half a pixel: bilinear averages
    neighbours (amplitude x 0.71), cubic convolution is 10x closer to the shifted wave;
    whole-pixel positions read pixels exactly."""
    xs = torch.arange(32, dtype=torch.float32)

    def wave(shift: float) -> torch.Tensor:
        row = 0.5 + 0.4 * torch.sin(2 * torch.pi * (xs + shift) / 4)
        return row.expand(1, 3, 32, 32)

    half = make_coordinate_grid(32, 32)[None] + torch.tensor([1 / 32, 0.0])  # +0.5 px in x
    err = {m: float((warp(wave(0), half, "border", m) - wave(0.5))[..., 3:-3].abs().max())
           for m in ("bilinear", "bicubic")}
    assert err["bilinear"] > 0.05 and err["bicubic"] < err["bilinear"] / 5, err
    ident = make_coordinate_grid(32, 32)[None]
    assert torch.allclose(warp(wave(0), ident, "border", "bicubic"), wave(0), atol=1e-6)


@pytest.mark.parametrize("padding", ["border", "zeros"])
def test_bicubic_from_bilinear_taps_equals_torchs_bicubic(padding: str) -> None:
    """The Core ML form (9 bilinear taps) against grid_sample's bicubic, samples outside
    the image included."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 24, 20, generator=gen)
    grid = make_coordinate_grid(24, 20)[None] * 1.15 + 0.05 * torch.randn(2, 24, 20, 2,
                                                                          generator=gen)
    want = torch.nn.functional.grid_sample(x, grid, mode="bicubic", padding_mode=padding,
                                           align_corners=False)
    got = bicubic_by_bilinear_taps(x, grid, padding)
    assert torch.allclose(got, want, atol=1e-5)
    assert torch.equal(warp(x, grid, padding, BICUBIC_TAPS), got.clamp(0, 1))


def test_antialias_downsample_keeps_constants() -> None:
    down = AntiAliasDownsample(3, 0.25)
    x = torch.full((1, 3, 64, 64), 0.3)
    y = down(x)
    assert y.shape == (1, 3, 16, 16)
    assert torch.allclose(y, torch.full_like(y, 0.3), atol=1e-6)


def test_inverted_residual_and_hourglass_shapes() -> None:
    block = InvertedResidual(8, 8, 1, 4)
    assert block.residual and block(torch.rand(2, 8, 5, 5)).shape == (2, 8, 5, 5)
    assert InvertedResidual(8, 16, 2, 4)(torch.rand(2, 8, 8, 8)).shape == (2, 16, 4, 4)
    hg = Hourglass(5, 8, 32, 3, 2)
    out, bottleneck = hg(torch.rand(2, 5, 16, 16))
    assert out.shape == (2, hg.out_channels, 16, 16) and hg.out_channels == 8 + 5
    assert bottleneck.shape == (2, 32, 2, 2)
