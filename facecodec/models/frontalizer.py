"""The Frontalizer Fr: warps the features of N source frames to a learned reference
position p_r and fuses them (Oquab et al. 2022, section 3.2.1, appendix 6.1.1).

For each source i: (t^{p_i -> p_r}, c_i) = Fr(x_i, p_i, p_r); e~_i = Gs(e^{p_i}, t);
w_i(u, v) = softmax_i c_i(u, v); e~^{p_r} = sum_i w_i e~_i.
The hourglass reads "keypoint displacement[s] as a difference of Gaussians" (appendix 6.1.1);
the flow is FOM's mask-weighted blend of per-keypoint motions (FOM eq. 8), which gives the
network a strong prior (local translations / affine maps) instead of a free flow field.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facecodec.config import MotionNetConfig
from facecodec.models.blocks import (
    Hourglass,
    combine_motions,
    deform_per_motion,
    identity_jacobians,
    keypoint_heatmaps,
    sparse_motions,
    warp,
)


@dataclass
class FrontalizerOutput:
    embedding: Tensor  # (B, C, h, w) fused e~^{p_r}
    flows: Tensor  # (B, N, h, w, 2) t^{p_i -> p_r}: where each reference pixel reads source i
    weights: Tensor  # (B, N, h, w) w_i, sum to 1 over i


class Frontalizer(nn.Module):
    """``reference`` is p_r, a learned (n_kp, 2) parameter ordered as the receiver's
    keypoints (supervised landmarks, irises, then unsupervised keypoints). Section 3.3: "The
    Frontalizer reference keypoints are initialized, for the part corresponding to supervised
    facial landmarks, to the average position in the dataset ... The reference unsupervised
    keypoints are initialized randomly close to the center"; the caller passes that init."""

    def __init__(self, config: MotionNetConfig, num_kp: int, feature_channels: int,
                 kp_variance: float, reference_init: Tensor | None = None):
        super().__init__()
        if reference_init is None:
            reference_init = torch.zeros(num_kp, 2)
        if tuple(reference_init.shape) != (num_kp, 2):
            raise ValueError(f"reference init {tuple(reference_init.shape)} != ({num_kp}, 2)")
        self.reference = nn.Parameter(reference_init.clone().float())
        self.num_kp = num_kp
        self.kp_variance = kp_variance
        self.mfc = config.motion_feature_channels
        # optional FOM-style appearance input: a few projected feature channels deformed by
        # each keypoint motion; 0 = the paper's mobile input, heatmaps only
        self.project = nn.Conv2d(feature_channels, self.mfc, 1) if self.mfc else None
        in_ch = num_kp + (num_kp + 1) * self.mfc
        self.hourglass = Hourglass(in_ch, config.base, config.max_channels, config.num_blocks,
                                   config.expansion)
        self.mask = nn.Conv2d(self.hourglass.out_channels, num_kp + 1, 3, padding=1)
        self.confidence = nn.Conv2d(self.hourglass.out_channels, 1, 3, padding=1)

    def forward(self, features: Tensor, kp: Tensor, jac: Tensor) -> FrontalizerOutput:
        """features (B, N, C, h, w), kp (B, N, K, 2), jac (B, N, K, 2, 2)."""
        b, n, c, h, w = features.shape
        k = self.num_kp
        feats = features.reshape(b * n, c, h, w)
        kp_i = kp.reshape(b * n, k, 2)
        jac_i = jac.reshape(b * n, k, 2, 2)
        ref = self.reference.unsqueeze(0).expand(b * n, k, 2)
        # difference of Gaussians: destination (reference) minus source, FOM eq. 6
        x = keypoint_heatmaps(ref, h, w, self.kp_variance) - keypoint_heatmaps(
            kp_i, h, w, self.kp_variance)
        # reference -> source i: T(z) = p_i + J_i (z - p_r), the reference having J = I
        motions = sparse_motions(h, w, kp_i, ref, jac_i, identity_jacobians(ref))
        if self.project is not None:
            x = torch.cat([x, deform_per_motion(self.project(feats), motions)], dim=1)
        out, _ = self.hourglass(x)
        flow, _ = combine_motions(motions, self.mask(out))
        warped = warp(feats, flow).reshape(b, n, c, h, w)
        weights = F.softmax(self.confidence(out).reshape(b, n, h, w), dim=1)
        fused = (warped * weights.unsqueeze(2)).sum(dim=1)
        return FrontalizerOutput(fused, flow.reshape(b, n, h, w, 2), weights)
