"""Decoder Dec: warped embedding + expression maps -> image (Oquab et al. section 3.1.1,
x~_d = Dec(e~^{p_d}); appendix 6.1: "(32, 32, 32) ... outputs an image of size (3, 256, 256)").

Section 3.2.2: "To concatenate its values to the input feature map of the decoder, we fill
E_k maps with the spatial repetition of each value e_k".

Optional pixel blend (docs/environment.md, CPU calibration): besides the RGB image the
decoder predicts a mask m, and the receiver outputs m * (source pixels warped by the
upsampled flow) + (1 - m) * decoder RGB. The mask bias starts at +2 (m ~ 0.88): the warp is
trusted first, so early training only has to learn motion and where to inpaint.
``pixel_warp`` "bicubic" samples those pixels with cubic convolution instead of bilinear
(sharper; the trained mask is ~0.99 almost everywhere, so the warp *is* the picture).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from facecodec.config import DecoderConfig
from facecodec.models.blocks import PIXEL_WARPS, InvertedResidual, UpBlock, log2_int


class Decoder(nn.Module):
    def __init__(self, config: DecoderConfig, in_channels: int, expr_dim: int,
                 feature_res: int, image_res: int):
        super().__init__()
        if config.pixel_warp not in PIXEL_WARPS:
            raise ValueError(f"pixel_warp {config.pixel_warp!r} not in {PIXEL_WARPS}")
        # how the receiver samples the source pixels it blends
        self.pixel_warp: str = config.pixel_warp
        n_up = log2_int(image_res // feature_res, "image_res / feature_res")
        self.expr_dim = expr_dim
        width, expansion = config.max_channels, config.expansion
        layers: list[nn.Module] = [InvertedResidual(in_channels + expr_dim, width, 1, 1)]
        layers += [InvertedResidual(width, width, 1, expansion)
                   for _ in range(config.res_blocks)]
        for _ in range(n_up):
            nxt = max(config.min_channels, width // 2)
            layers.append(UpBlock(width, nxt, expansion))
            width = nxt
        self.body = nn.Sequential(*layers)
        self.rgb = nn.Conv2d(width, 3, 3, padding=1)
        self.blend: nn.Conv2d | None = None
        if config.pixel_blend:
            self.blend = nn.Conv2d(width, 1, 3, padding=1)
            nn.init.constant_(self.blend.bias, config.blend_bias)

    def forward(self, features: Tensor, expr: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """-> (RGB in [0, 1] (B, 3, H, W), blend mask (B, 1, H, W) or None)."""
        if self.expr_dim:
            if expr is None:
                raise ValueError("this decoder is conditioned on an expression code")
            b, _, h, w = features.shape
            maps = expr.reshape(b, self.expr_dim, 1, 1).expand(b, self.expr_dim, h, w)
            features = torch.cat([features, maps], dim=1)
        out = self.body(features)
        mask = torch.sigmoid(self.blend(out)) if self.blend is not None else None
        return torch.sigmoid(self.rgb(out)), mask
