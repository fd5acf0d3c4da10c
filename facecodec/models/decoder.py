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

Optional part maps (``part_maps``, issue 19): the driving frame's eye and mouth openings
and regions, drawn from its supervised landmarks at the size of the features after every
upsampling block (facecodec/models/part_maps.py), each added through a 3x3 convolution
whose weights and bias start at zero. At zero the features, and so the output, are
exactly those of the same weights without the option: a fine-tune starts from the
shipped model's pictures (``registry.load_adding_part_maps`` loads its weights).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from facecodec.config import DecoderConfig, ModelConfig
from facecodec.models.blocks import PIXEL_WARPS, InvertedResidual, UpBlock, log2_int
from facecodec.models.layout import KeypointLayout
from facecodec.models.part_maps import NUM_MAPS, part_maps

PART_CONVS = "part_convs"
"""The attribute of the part maps' convolutions: the parameters a model without them lacks."""


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
        # the part maps join the output of every upsampling block (of the last layer
        # without any): the last features, before the heads, and coarser ones that the
        # blocks after them can combine with the warped features non-linearly
        self.part_convs: nn.ModuleList | None = None
        self._part_layers: dict[int, int] = {}
        if config.part_maps:
            at = [i for i, layer in enumerate(layers) if isinstance(layer, UpBlock)]
            at = at or [len(layers) - 1]
            self._part_layers = {i: j for j, i in enumerate(at)}
            with torch.random.fork_rng(devices=[]):  # the other layers' init stays as it was
                convs = [nn.Conv2d(NUM_MAPS, _out_channels(layers[i]), 3, padding=1)
                         for i in at]
            for conv in convs:
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)
            self.part_convs = nn.ModuleList(convs)
        self.rgb = nn.Conv2d(width, 3, 3, padding=1)
        self.blend: nn.Conv2d | None = None
        if config.pixel_blend:
            self.blend = nn.Conv2d(width, 1, 3, padding=1)
            nn.init.constant_(self.blend.bias, config.blend_bias)

    def forward(self, features: Tensor, expr: Tensor | None = None, sup: Tensor | None = None
                ) -> tuple[Tensor, Tensor | None]:
        """``sup``: the driving frame's supervised landmarks (B, 33, 2), read with the part
        maps only. -> (RGB in [0, 1] (B, 3, H, W), blend mask (B, 1, H, W) or None)."""
        if self.expr_dim:
            if expr is None:
                raise ValueError("this decoder is conditioned on an expression code")
            b, _, h, w = features.shape
            maps = expr.reshape(b, self.expr_dim, 1, 1).expand(b, self.expr_dim, h, w)
            features = torch.cat([features, maps], dim=1)
        if self.part_convs is None:
            out = self.body(features)
        else:
            if sup is None:
                raise ValueError("this decoder draws part maps from the supervised landmarks")
            out = features
            for i, layer in enumerate(self.body):
                out = layer(out)
                j = self._part_layers.get(i)
                if j is not None:
                    maps = part_maps(sup.to(out.dtype), out.shape[-2], out.shape[-1])
                    out = out + self.part_convs[j](maps)
        mask = torch.sigmoid(self.blend(out)) if self.blend is not None else None
        return torch.sigmoid(self.rgb(out)), mask


def check_part_maps(config: ModelConfig, layout: KeypointLayout) -> None:
    """The part maps are drawn from the supervised landmarks: a variant must carry them."""
    if config.decoder.part_maps and not layout.sup:
        raise ValueError("model.decoder.part_maps needs the supervised landmarks "
                         "(model.landmarks.sup)")


def _out_channels(layer: nn.Module) -> int:
    """Output channels of a decoder layer (the last convolution's)."""
    return [m for m in layer.modules() if isinstance(m, nn.Conv2d)][-1].out_channels
