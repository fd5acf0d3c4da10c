"""First Order Model baseline receiver (Siarohin et al. 2019; Oquab et al. section 3.1.1):
one source frame, unsupervised keypoints with Jacobians, no Frontalizer.

x~_d = Dec(Gs(Enc(x_s), t^{p_s -> p_d}) * o^{p_s -> p_d}). The same encoder, dense motion
and decoder blocks as the Frontalizer receiver ("the same network architectures for our
approach and for the FOM-Mobile baseline", section 4.2), and the same cache split.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from facecodec.config import ModelConfig
from facecodec.models.blocks import resize_flow, warp
from facecodec.models.decoder import Decoder, check_part_maps
from facecodec.models.dense_motion import DenseMotion
from facecodec.models.encoder import Encoder
from facecodec.models.generator import RenderOutput, blend_output
from facecodec.models.keypoints import assemble
from facecodec.models.layout import KeypointLayout, Values


@dataclass
class FomCache:
    features: Tensor  # (B, C, h, w) e^{p_s}
    kp: Tensor  # (B, K, 2) p_s
    jac: Tensor  # (B, K, 2, 2)
    image: Tensor  # (B, 3, H, W) the source frame, for the pixel blend

    def repeat(self, times: int) -> FomCache:
        return FomCache(*(t.repeat_interleave(times, dim=0)
                          for t in (self.features, self.kp, self.jac, self.image)))


class FomReceiver(nn.Module):
    def __init__(self, layout: KeypointLayout, config: ModelConfig, resolution: int):
        """``resolution``: the side of the images the networks take."""
        super().__init__()
        self.layout = layout
        fres = config.feature_res
        self.encoder = Encoder(config.encoder, resolution, fres)
        c = self.encoder.out_channels
        self.dense_motion = DenseMotion(config.dense_motion, layout.num_kp, c,
                                        config.kp_variance)
        check_part_maps(config, layout)
        self.decoder = Decoder(config.decoder, c, layout.expr_dim, fres, resolution)

    @property
    def pixel_blend(self) -> bool:
        return self.decoder.blend is not None

    mixes_sources = False  # one source: nothing to weight per frame

    def embed_sources(self, images: Tensor, values: Values,
                      pixels: Tensor | None = None) -> FomCache:
        """images (B, N, 3, H, W): only the first source is used (FOM has one);
        ``pixels``: the same frames at the output size for the pixel blend (default:
        ``images``; see :func:`facecodec.models.generator.blend_output`)."""
        kp, jac = assemble(self.layout, {k: v[:, 0] for k, v in values.items()})
        full = images if pixels is None else pixels
        return FomCache(self.encoder(images[:, 0]), kp, jac, full[:, 0])

    def render(self, cache: FomCache, values: Values,
               source_mix: Tensor | None = None) -> RenderOutput:
        """``source_mix`` is ignored (the receivers share one signature; FOM has one
        source)."""
        kp_d, jac_d = assemble(self.layout, values)
        motion = self.dense_motion(cache.features, cache.kp, kp_d, cache.jac, jac_d)
        warped = warp(cache.features, motion.flow) * motion.occlusion
        rgb, mask = self.decoder(warped, values.get("expr"), values.get("sup"))
        pixels = None
        if mask is not None:
            h, w = cache.image.shape[-2:]
            pixels = warp(cache.image, resize_flow(motion.flow, h, w), "border",
                          self.decoder.pixel_warp)
        return RenderOutput(blend_output(rgb, mask, pixels), rgb, mask, pixels,
                            motion.occlusion, motion.flow)

    def forward(self, images: Tensor, src_values: Values, values: Values) -> Tensor:
        return self.render(self.embed_sources(images, src_values), values).image
