"""Dense motion network Dm: flow and occlusion from a source position to the driving one
(FOM section 3.2; Oquab et al. section 3.1.1: (t^{p_s -> p_d}, o^{p_s -> p_d}) = Dm(x_s, p_s,
p_d), then e~^{p_d} = Gs(e^{p_s}, t) * o).

In the Frontalizer receiver the source position is the reference p_r and the "source"
features are the fused embedding; in the FOM baseline they are the source frame's.
Appendix 6.1.1: input (n_kp, 32, 32) keypoint displacements, output one (32, 32, 2) flow and
one (32, 32) map.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from facecodec.config import MotionNetConfig
from facecodec.models.blocks import (
    Hourglass,
    combine_motions,
    deform_per_motion,
    keypoint_heatmaps,
    sparse_motions,
)


@dataclass
class MotionOutput:
    flow: Tensor  # (B, h, w, 2): for each driving-frame pixel, where to read the source
    occlusion: Tensor  # (B, 1, h, w) in (0, 1)
    mask: Tensor  # (B, K + 1, h, w) motion masks (background first)


class DenseMotion(nn.Module):
    def __init__(self, config: MotionNetConfig, num_kp: int, feature_channels: int,
                 kp_variance: float):
        super().__init__()
        self.num_kp = num_kp
        self.kp_variance = kp_variance
        self.mfc = config.motion_feature_channels
        self.project = nn.Conv2d(feature_channels, self.mfc, 1) if self.mfc else None
        in_ch = num_kp + (num_kp + 1) * self.mfc
        self.hourglass = Hourglass(in_ch, config.base, config.max_channels, config.num_blocks,
                                   config.expansion)
        self.mask = nn.Conv2d(self.hourglass.out_channels, num_kp + 1, 3, padding=1)
        self.occlusion = nn.Conv2d(self.hourglass.out_channels, 1, 3, padding=1)

    def forward(
        self, features: Tensor, kp_src: Tensor, kp_dst: Tensor, jac_src: Tensor, jac_dst: Tensor
    ) -> MotionOutput:
        """features (B, C, h, w) at the source position; kp (B, K, 2); jac (B, K, 2, 2)."""
        _, _, h, w = features.shape
        x = keypoint_heatmaps(kp_dst, h, w, self.kp_variance) - keypoint_heatmaps(
            kp_src, h, w, self.kp_variance)
        motions = sparse_motions(h, w, kp_src, kp_dst, jac_src, jac_dst)
        if self.project is not None:
            x = torch.cat([x, deform_per_motion(self.project(features), motions)], dim=1)
        out, _ = self.hourglass(x)
        flow, mask = combine_motions(motions, self.mask(out))
        return MotionOutput(flow, torch.sigmoid(self.occlusion(out)), mask)
