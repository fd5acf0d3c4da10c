"""Unsupervised keypoint detector with its Jacobian head and the expression MLP g.

Appendix 6.1: "The (unsup) keypoint extractor takes as input an image tensor of size
(3, 64, 64) and outputs K heatmaps of size (64, 64). We apply a spatial softmax to these
heatmaps then compute the center of mass". Jacobians as in FOM section 3.1 (a 4-channel
map per keypoint averaged under its heatmap, initialised to the identity).
Section 3.2.2 / appendix 6.1.2: e = g(f_m(x_d)), g = linear -> 32, batch norm, ReLU,
linear -> M = 16, sigmoid, read from the central feature of the detector (figure 15).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from facecodec.config import KeypointDetectorConfig
from facecodec.models.blocks import AntiAliasDownsample, Hourglass, spatial_softmax_keypoints


class ExpressionMLP(nn.Module):
    """g of section 3.2.2. The sigmoid output s in [0, 1] is mapped to e = 2 s - 1 in
    [-1, 1], the range the bitstream codes the expression on (section 4.3: "the M
    expression codes on 10 bits in [-1, 1]")."""

    def __init__(self, in_features: int, hidden: int, out_features: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, out_features),
        )

    def forward(self, bottleneck: Tensor) -> Tensor:
        return 2.0 * torch.sigmoid(self.net(bottleneck.flatten(1))) - 1.0


class KeypointDetector(nn.Module):
    """Image (B, 3, H, W) -> {"unsup": (B, K, 2), "jac": (B, K, 2, 2), "expr": (B, M)}.

    ``num_kp = 0`` keeps only the expression branch; ``expr_dim = 0`` drops it. The image
    is band-limited and resampled to ``config.input_res`` first, whatever the training
    resolution (``image_res``).
    """

    def __init__(self, config: KeypointDetectorConfig, num_kp: int, image_res: int,
                 jacobians: bool, expr_dim: int):
        super().__init__()
        if num_kp == 0 and expr_dim == 0:
            raise ValueError("a keypoint detector with neither keypoints nor expression")
        self.num_kp = num_kp
        self.temperature = config.temperature
        self.down = AntiAliasDownsample(3, config.input_res / image_res)
        self.hourglass = Hourglass(3, config.base, config.max_channels, config.num_blocks,
                                   config.expansion)
        c = self.hourglass.out_channels
        kernel = config.head_kernel
        pad = kernel // 2
        self.heatmap = nn.Conv2d(c, num_kp, kernel, padding=pad) if num_kp else None
        self.jacobian: nn.Conv2d | None = None
        if num_kp and jacobians:
            self.jacobian = nn.Conv2d(c, 4 * num_kp, kernel, padding=pad)
            # FOM: zero weights + identity bias, so every Jacobian starts as I and the first
            # steps move keypoints by translation only
            nn.init.zeros_(self.jacobian.weight)
            with torch.no_grad():
                self.jacobian.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 1.0] * num_kp))
        self.expr: ExpressionMLP | None = None
        if expr_dim:
            spatial = (config.input_res // 2**config.num_blocks) ** 2
            self.expr = ExpressionMLP(self.hourglass.bottleneck_channels * spatial,
                                      config.expr_hidden, expr_dim)

    def forward(self, image: Tensor) -> dict[str, Tensor]:
        features, bottleneck = self.hourglass(self.down(image))
        out: dict[str, Tensor] = {}
        if self.heatmap is not None:
            kp, prob = spatial_softmax_keypoints(self.heatmap(features), self.temperature)
            out["unsup"] = kp
            if self.jacobian is not None:
                b, k, h, w = prob.shape
                jmap = self.jacobian(features).reshape(b, k, 4, h * w)
                jac = (jmap * prob.reshape(b, k, 1, h * w)).sum(-1)
                out["jac"] = jac.reshape(b, k, 2, 2)
        if self.expr is not None:
            out["expr"] = self.expr(bottleneck)
        return out
