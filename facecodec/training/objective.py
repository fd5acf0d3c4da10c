"""The generator's training objective as one module, so that DDP wraps model + losses
together (as FOM's ``GeneratorFullModel``): perceptual pyramid, L1 and equivariance here;
the adversarial terms are added by the trainer, which owns the discriminator.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from facecodec.config import LossesConfig
from facecodec.models.base import FaceAnimationModel, TrainOutput
from facecodec.models.part_maps import PARTS, part_maps
from facecodec.training.losses import (
    PerceptualLoss,
    RandomTransform,
    crop_regions,
    equivariance_losses,
    region_boxes,
)
from facecodec.training.vgg import build_feature_net


class GeneratorObjective(nn.Module):
    def __init__(self, model: FaceAnimationModel, config: LossesConfig):
        super().__init__()
        self.model = model
        self.cfg = config
        pc = config.perceptual
        weights = list(pc.weights)
        self.perceptual: PerceptualLoss | None = None
        if any(weights):
            used = max(i for i, w in enumerate(weights) if w) + 1  # skip unused deep layers
            self.perceptual = PerceptualLoss(build_feature_net(pc.network, used),
                                             list(pc.scales), weights)

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor], TrainOutput]:
        out = self.model.training_forward(batch)
        terms: dict[str, Tensor] = {}
        if self.perceptual is not None:
            terms["perceptual"] = self.perceptual(out.prediction, out.target)
        if self.cfg.l1:
            terms["l1"] = self.cfg.l1 * (out.prediction - out.target).abs().mean()
        terms.update(self._regions(batch, out))
        terms.update(self._equivariance(out))
        terms.update(out.extra_losses)
        total = sum(terms.values(), out.prediction.new_zeros(()))
        return total, terms, out

    def _regions(self, batch: dict[str, Tensor], out: TrainOutput) -> dict[str, Tensor]:
        """``losses.regions``: perceptual and L1 terms on the eyes and the mouth of every
        driving frame, cropped where the driver's landmarks put them; with the pixel
        blend, optionally an L1 term on the decoder's drawing alone (``rgb_l1``) and one
        on the mask over the parts no source shows as the driver does (``new_mask``)."""
        rc = self.cfg.regions
        wp, wl, wr = rc.perceptual, rc.l1, rc.rgb_l1
        terms = {}
        if rc.new_mask and "drv_sup" in batch:
            terms["region_new_mask"] = rc.new_mask * new_parts_mask(batch, out)
        if not (wp or wl or wr) or "drv_sup" not in batch:
            return terms
        boxes = region_boxes(batch["drv_sup"].flatten(0, 1).to(out.prediction.dtype),
                             rc.eye_box, rc.mouth_box)
        size = rc.size
        pred = crop_regions(out.prediction, boxes, size)
        target = crop_regions(out.target, boxes, size)
        if wl:
            terms["region_l1"] = wl * (pred - target).abs().mean()
        if wp and self.perceptual is not None:
            terms["region_perceptual"] = wp * self.perceptual.single_scale(pred, target)
        if wr:
            if getattr(out.details, "blend", None) is None:
                raise ValueError("losses.regions.rgb_l1 needs model.decoder.pixel_blend")
            # the boxes are in [-1, 1] coordinates: the same crops of the smaller drawing
            rgb = crop_regions(out.details.rgb, boxes, size)
            terms["region_rgb_l1"] = wr * (rgb - target).abs().mean()
        return terms

    def _equivariance(self, out: TrainOutput) -> dict[str, Tensor]:
        """FOM section 3.3: the detector on a randomly warped copy of each driving frame must
        give the warped keypoints (and Jacobians). Uses the global torch RNG (checkpointed)."""
        detector = self.model.keypoint_detector()
        wv, wj = self.cfg.equivariance_value, self.cfg.equivariance_jacobian
        if detector is None or not (wv or wj) or "unsup" not in out.driving_values:
            return {}
        tc = self.cfg.transform
        frames = out.target if out.sender_frames is None else out.sender_frames
        transform = RandomTransform(frames.shape[0], tc.sigma_affine, tc.sigma_tps,
                                    tc.points_tps, like=frames)
        det = detector(transform.transform_frame(frames))
        value, jac = equivariance_losses(out.driving_values["unsup"],
                                         out.driving_values.get("jac"), det["unsup"],
                                         det.get("jac"), transform)
        terms = {"equivariance_value": wv * value} if wv else {}
        if wj and jac is not None:
            terms["equivariance_jacobian"] = wj * jac
        return terms


def openness(sup: Tensor) -> Tensor:
    """(..., 33, 2) supervised landmarks -> (..., 3) lid (inner lip) gap over corner
    distance of the right eye, the left eye and the mouth (``part_maps.PARTS``)."""
    idx = torch.tensor(PARTS, device=sup.device)
    pts = sup[..., idx.flatten(), :].unflatten(-2, idx.shape)  # (..., 3, 4, 2)
    width = (pts[..., 0, :] - pts[..., 1, :]).norm(dim=-1).clamp(min=1e-6)
    return (pts[..., 2, :] - pts[..., 3, :]).norm(dim=-1) / width


def new_parts(src_sup: Tensor, drv_sup: Tensor) -> Tensor:
    """(B, N, 33, 2) sources', (B, D, 33, 2) drivers' landmarks -> (B * D, 3) bool: the
    parts each driver shows as no source does (``RegionsConfig.new_mask``)."""
    src = openness(src_sup)  # (B, N, 3)
    lo, hi = src.min(dim=1).values, src.max(dim=1).values  # (B, 3)
    drv = openness(drv_sup)  # (B, D, 3)
    lo, hi = lo.unsqueeze(1), hi.unsqueeze(1)
    closed = drv < 0.5 * lo
    opened = drv > 2.0 * hi + 0.05
    opened[..., :2] = False  # an eye wider than every source: the warp stretches it
    return (closed | opened).flatten(0, 1)


def new_parts_mask(batch: dict[str, Tensor], out: TrainOutput) -> Tensor:
    """The blend mask's mean over the regions of the parts the drivers show as no source
    does, averaged over those parts (0 when there are none)."""
    mask = getattr(out.details, "blend", None)
    if mask is None:
        raise ValueError("losses.regions.new_mask needs model.decoder.pixel_blend")
    flags = new_parts(batch["src_sup"], batch["drv_sup"]).to(mask.dtype)  # (BD, 3)
    drv = batch["drv_sup"].flatten(0, 1).to(mask.dtype)
    regions = part_maps(drv, mask.shape[-2], mask.shape[-1])[:, len(PARTS):]  # (BD, 3, h, w)
    share = (regions * mask).flatten(2).sum(-1) / regions.flatten(2).sum(-1).clamp(min=1e-6)
    return (share * flags).sum() / flags.sum().clamp(min=1.0)


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (or itself)."""
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module

