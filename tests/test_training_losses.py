"""Loss functions: the equivariance math on known transforms, and the image losses."""

from __future__ import annotations

import torch

from facecodec.models.blocks import inverse_2x2, spatial_softmax_keypoints
from facecodec.training.losses import (
    ImagePyramid,
    PerceptualLoss,
    RandomTransform,
    equivariance_losses,
    feature_matching_loss,
    hinge_discriminator_loss,
    hinge_generator_loss,
)
from facecodec.training.vgg import tiny_random_features


def _transform(seed: int, sigma_tps: float = 0.005) -> RandomTransform:
    return RandomTransform(3, 0.05, sigma_tps, 5, generator=torch.Generator().manual_seed(seed))


def test_closed_form_tps_jacobian_matches_autograd() -> None:
    t = _transform(0, sigma_tps=0.05)
    coords = (torch.rand(3, 7, 2, generator=torch.Generator().manual_seed(1)) * 2 - 1)
    coords.requires_grad_(True)
    warped = t.warp_coordinates(coords)
    rows = [torch.autograd.grad(warped[..., i].sum(), coords, retain_graph=True)[0]
            for i in range(2)]
    auto = torch.stack(rows, dim=-2)  # d g_i / d z_j
    assert torch.allclose(t.jacobian(coords.detach()), auto, atol=1e-5)


def _blob_detector(images: torch.Tensor) -> torch.Tensor:
    """An equivariant 'detector': the centre of mass of image brightness -> (B, 1, 2)."""
    gray = images.mean(1, keepdim=True)
    kp, _ = spatial_softmax_keypoints(torch.log(gray + 1e-6), 1.0)
    return kp


def _blob_images(centres: torch.Tensor, size: int = 96) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size),
                            indexing="ij")
    d2 = (xs - centres[:, 0, None, None]) ** 2 + (ys - centres[:, 1, None, None]) ** 2
    return torch.exp(-d2 / 0.01).unsqueeze(1).expand(-1, 3, -1, -1).contiguous()


def test_transform_frame_moves_content_as_warp_coordinates_says() -> None:
    """A blob at p in the frame appears at q in the transformed frame with g(q) = p, which is
    the relation the equivariance loss enforces."""
    centres = torch.tensor([[0.1, -0.2], [-0.3, 0.25], [0.0, 0.0]])
    frames = _blob_images(centres)
    t = _transform(2)
    q = _blob_detector(t.transform_frame(frames))
    p = _blob_detector(frames)
    assert torch.allclose(t.warp_coordinates(q), p, atol=0.01)
    assert (q - p).abs().max() > 0.02  # the transform did move the blobs
    value, _ = equivariance_losses(p, None, q, None, t)
    assert float(value) < 0.01
    # a detector that ignores the image breaks equivariance: the loss sees it
    const = torch.zeros(3, 1, 2)
    bad, _ = equivariance_losses(p, None, const, None, t)
    assert float(bad) > 5 * float(value)


def test_equivariance_loss_is_zero_for_exact_affine_answers() -> None:
    """Pure affine g(z) = A z + t: the exact transformed keypoints are A^-1 (p - t) and the
    exact transformed Jacobians A^-1 J; both losses must vanish, and grow when wrong."""
    t = RandomTransform(2, 0.1, 0.0, 5, generator=torch.Generator().manual_seed(3))
    gen = torch.Generator().manual_seed(4)
    p = torch.rand(2, 4, 2, generator=gen) - 0.5
    jac = torch.eye(2) + 0.2 * torch.randn(2, 4, 2, 2, generator=gen)
    a_inv = inverse_2x2(t.a).unsqueeze(1)
    p_t = ((p - t.t.unsqueeze(1)).unsqueeze(-2) @ a_inv.transpose(-1, -2)).squeeze(-2)
    jac_t = a_inv @ jac
    value, jloss = equivariance_losses(p, jac, p_t, jac_t, t)
    assert float(value) < 1e-6 and jloss is not None and float(jloss) < 1e-5
    value, jloss = equivariance_losses(p, jac, p_t + 0.05, jac, t)
    assert float(value) > 0.01 and float(jloss) > 0.01


def test_image_losses() -> None:
    gen = torch.Generator().manual_seed(5)
    x = torch.rand(2, 3, 32, 32, generator=gen)
    y = torch.rand(2, 3, 32, 32, generator=gen)
    pyr = ImagePyramid([1, 0.5, 0.25])(x)
    assert [v.shape[-1] for v in pyr.values()] == [32, 16, 8]
    loss = PerceptualLoss(tiny_random_features(3), [1, 0.5], [1, 1, 1])
    assert float(loss(x, x)) == 0.0
    near = (x + 0.02 * torch.randn(x.shape, generator=gen)).clamp(0, 1)
    assert 0 < float(loss(x, near)) < float(loss(x, y))
    pred = x.clone().requires_grad_(True)
    loss(pred, y).backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0


def test_hinge_and_feature_matching() -> None:
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])
    # relu(1 - real) = [0, 0.5]; relu(1 + fake) = [0, 1]
    assert float(hinge_discriminator_loss(real, fake)) == 0.25 + 0.5
    assert float(hinge_generator_loss(fake)) == 1.0
    feats = [torch.ones(2, 3), torch.zeros(2, 4)]
    assert float(feature_matching_loss(feats, feats, [10, 10])) == 0.0
    other = [torch.zeros(2, 3), torch.zeros(2, 4)]
    assert float(feature_matching_loss(feats, other, [10, 0])) == 10.0
