"""Training losses (FOM section 3.3; Oquab et al. appendix 6.1.3): multi-scale perceptual
loss on an image pyramid, L1, hinge adversarial loss with feature matching, and the
equivariance constraints on unsupervised keypoints and their Jacobians.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facecodec.models.blocks import (
    ALIGN_CORNERS,
    AntiAliasDownsample,
    inverse_2x2,
    make_coordinate_grid,
)
from facecodec.models.discriminator import scale_key


class ImagePyramid(nn.Module):
    """{scale_key(s): image band-limited and resized by s} (FOM ``ImagePyramide``)."""

    def __init__(self, scales: list[float]):
        super().__init__()
        self.downs = nn.ModuleDict({scale_key(s): AntiAliasDownsample(3, float(s))
                                    for s in scales})

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return {k: down(x) for k, down in self.downs.items()}


class PerceptualLoss(nn.Module):
    """sum_scales sum_layers w_l * mean |N_l(pred_s) - N_l(target_s)| (FOM eq. 10 with a
    frozen feature net N; target features carry no gradient)."""

    def __init__(self, net: nn.Module, scales: list[float], weights: list[float]):
        super().__init__()
        self.net = net
        self.pyramid = ImagePyramid(scales)
        self.weights = [float(w) for w in weights]

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        pp, pt = self.pyramid(pred), self.pyramid(target)
        return sum((self.single_scale(pp[k], pt[k]) for k in pp), pred.new_zeros(()))

    def single_scale(self, pred: Tensor, target: Tensor) -> Tensor:
        """sum_layers w_l * mean |N_l(pred) - N_l(target)| at the images' own size."""
        total = pred.new_zeros(())
        with torch.no_grad():
            ft = self.net(target)
        for w, a, b in zip(self.weights, self.net(pred), ft, strict=False):
            if w:
                total = total + w * (a - b).abs().mean()
        return total


# Positions in the supervised landmark set (facecodec.sender.landmarks.SUPERVISED_LANDMARKS)
# of each eye's outer corner, upper lid, inner corner, lower lid, and of the ten mouth points
# (corners first-and-fifth).
EYE_POINTS = ((13, 14, 15, 16), (17, 18, 19, 20))
MOUTH_POINTS = tuple(range(23, 33))


def region_boxes(sup: Tensor, eye_box: float, mouth_box: float) -> Tensor:
    """(B, 33, 2) supervised landmarks in [-1, 1] -> (B, 3, 3) square boxes (centre x, centre
    y, half side) around the right eye, the left eye and the mouth: the centre of the
    region's points, a side of ``eye_box`` (``mouth_box``) times the corner-to-corner width."""
    boxes = []
    for points, scale in ((EYE_POINTS[0], eye_box), (EYE_POINTS[1], eye_box),
                          (MOUTH_POINTS, mouth_box)):
        pts = sup[:, list(points)]
        width = (pts[:, 0] - pts[:, 2 if len(points) == 4 else 4]).norm(dim=-1)
        boxes.append(torch.cat([pts.mean(dim=1), (0.5 * scale * width)[:, None]], dim=1))
    return torch.stack(boxes, dim=1)


def crop_regions(images: Tensor, boxes: Tensor, size: int) -> Tensor:
    """(B, C, H, W) images, (B, R, 3) boxes -> (B * R, C, size, size) bilinear crops."""
    b, r = boxes.shape[:2]
    flat = boxes.reshape(b * r, 3)
    theta = torch.zeros(b * r, 2, 3, dtype=images.dtype, device=images.device)
    theta[:, 0, 0] = theta[:, 1, 1] = flat[:, 2]
    theta[:, :, 2] = flat[:, :2]
    grid = F.affine_grid(theta, [b * r, images.shape[1], size, size],
                         align_corners=ALIGN_CORNERS)
    return F.grid_sample(images.repeat_interleave(r, dim=0), grid, padding_mode="border",
                         align_corners=ALIGN_CORNERS)


def hinge_discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """E[max(0, 1 - D(x))] + E[max(0, 1 + D(G(z)))]."""
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


def hinge_generator_loss(fake_logits: Tensor) -> Tensor:
    """-E[D(G(z))]."""
    return -fake_logits.mean()


def feature_matching_loss(real: list[Tensor], fake: list[Tensor], weights: list[float]) -> Tensor:
    """sum_l w_l mean |D_l(x) - D_l(G(z))| over discriminator layers (FOM's feature matching)."""
    total = fake[0].new_zeros(())
    for w, a, b in zip(weights, real, fake, strict=False):
        if w:
            total = total + float(w) * (a.detach() - b).abs().mean()
    return total


class RandomTransform:
    """A random affine + thin-plate-spline warp g(z) = A z + t + sum_c w_c U(|z - c|), with
    U(r) = r^2 log r on a ``points`` x ``points`` grid of control points c (FOM section 3.3,
    equivariance). ``transform_frame`` resamples a frame at g(z), so content at p in the
    frame appears at q with g(q) = p: equivariance asks kp(frame) = g(kp(transformed)).
    FOM adds one scalar per control point to both coordinates; we draw a 2-vector, and give
    the Jacobian in closed form (checked against autograd in the tests)."""

    def __init__(self, batch: int, sigma_affine: float, sigma_tps: float, points: int,
                 like: Tensor | None = None, generator: torch.Generator | None = None):
        dtype = like.dtype if like is not None else torch.float32
        noise = torch.randn(batch, 2, 3, generator=generator, dtype=dtype) * sigma_affine
        theta = noise + torch.eye(2, 3, dtype=dtype)
        self.a, self.t = theta[:, :, :2], theta[:, :, 2]
        self.control = make_coordinate_grid(points, points).reshape(-1, 2).to(dtype)
        self.w = sigma_tps * torch.randn(batch, points * points, 2, generator=generator,
                                         dtype=dtype)
        if like is not None:
            self.a, self.t = self.a.to(like.device), self.t.to(like.device)
            self.control, self.w = self.control.to(like.device), self.w.to(like.device)

    def _sq_dist(self, coords: Tensor) -> tuple[Tensor, Tensor]:
        diff = coords.unsqueeze(2) - self.control.reshape(1, 1, -1, 2)  # (B, P, C, 2)
        return diff, (diff**2).sum(-1)

    def warp_coordinates(self, coords: Tensor) -> Tensor:
        """coords (B, P, 2) -> g(coords)."""
        out = coords @ self.a.transpose(1, 2) + self.t.unsqueeze(1)
        _, s = self._sq_dist(coords)
        u = 0.5 * s * torch.log(s + 1e-9)  # r^2 log r = s log(s) / 2
        return out + u @ self.w

    def jacobian(self, coords: Tensor) -> Tensor:
        """dg/dz at coords -> (B, P, 2, 2): A + sum_c w_c (log s_c + 1) (z - c)^T."""
        diff, s = self._sq_dist(coords)
        grad_u = (torch.log(s + 1e-9) + 1.0).unsqueeze(-1) * diff  # (B, P, C, 2)
        return self.a.unsqueeze(1) + torch.einsum("bci,bpcj->bpij", self.w, grad_u)

    def transform_frame(self, frame: Tensor) -> Tensor:
        b, _, h, w = frame.shape
        grid = make_coordinate_grid(h, w, frame).reshape(1, h * w, 2).expand(b, h * w, 2)
        grid = self.warp_coordinates(grid).reshape(b, h, w, 2)
        return F.grid_sample(frame, grid, padding_mode="reflection", align_corners=ALIGN_CORNERS)


def equivariance_losses(kp: Tensor, jac: Tensor | None, kp_t: Tensor, jac_t: Tensor | None,
                        transform: RandomTransform) -> tuple[Tensor, Tensor | None]:
    """FOM eqs. 11-12 as implemented there: value |p - g(p_t)|_1 and Jacobian
    |I - J^-1 (dg(p_t) J_t)|_1, where (p, J) come from the frame and (p_t, J_t) from the
    transformed frame."""
    value = (kp - transform.warp_coordinates(kp_t)).abs().mean()
    if jac is None or jac_t is None:
        return value, None
    predicted = transform.jacobian(kp_t) @ jac_t
    eye = torch.eye(2, dtype=kp.dtype, device=kp.device)
    return value, (eye - inverse_2x2(jac) @ predicted).abs().mean()
