"""The Frontalizer receiver: Encoder + Frontalizer + Dense motion + Decoder (Oquab et al.
figure 3), split along what the receiver can cache.

``embed_sources`` runs once per set of source frames (top of figure 3: Enc and Fr, giving
the fused embedding e~^{p_r}); ``render`` runs per frame (bottom: Dm from p_r to p_d, warp,
occlusion, Dec). Nothing in ``render`` depends on the sources except through the cache.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from facecodec.config import ModelConfig
from facecodec.models.blocks import ALIGN_CORNERS, identity_jacobians, resize_flow, warp
from facecodec.models.decoder import Decoder, check_part_maps
from facecodec.models.dense_motion import DenseMotion
from facecodec.models.encoder import Encoder
from facecodec.models.frontalizer import Frontalizer
from facecodec.models.keypoints import assemble
from facecodec.models.layout import KeypointLayout, Values


@dataclass
class SourceCache:
    """Everything ``render`` needs from the sources. ``pixel_*`` are set when the decoder
    blends warped source pixels (a cheap per-frame composition of cached flows)."""

    embedding: Tensor  # (B, C, h, w) e~^{p_r}
    images: Tensor | None = None  # (B, N, 3, H, W)
    flows: Tensor | None = None  # (B, N, 2, h, w) reference -> source i, channels first
    weights: Tensor | None = None  # (B, N, h, w) softmaxed confidences

    def repeat(self, times: int) -> SourceCache:
        """Each batch entry ``times`` times in a row (one cache, several driving frames)."""
        return repeat_batch(self, times)


def repeat_batch(cache, times: int):
    """A dataclass of tensors (a receiver's source cache) with each batch entry ``times``
    times in a row; fields that are None stay None."""
    return dataclasses.replace(cache, **{
        f.name: getattr(cache, f.name).repeat_interleave(times, dim=0)
        for f in dataclasses.fields(cache) if getattr(cache, f.name) is not None})


@dataclass
class RenderOutput:
    image: Tensor  # (B, 3, H, W) the reconstruction
    rgb: Tensor  # decoder output alone
    blend: Tensor | None  # (B, 1, H, W) weight of the warped source pixels
    warped_pixels: Tensor | None  # (B, 3, H, W)
    occlusion: Tensor  # (B, 1, h, w)
    flow: Tensor  # (B, h, w, 2) driving -> cached position


def blend_output(rgb: Tensor, mask: Tensor | None, pixels: Tensor | None) -> Tensor:
    """m * warped pixels + (1 - m) * decoder RGB (docs/environment.md calibration).

    ``pixels`` may be larger than the decoder's output: the receiver warps the source
    frames at the display size (they arrive at 256 while the model runs at 128), and the
    decoder's RGB and mask are resized to it. The warp is a smooth field, so this is the
    same composition at a finer sampling; it keeps the sources' detail that a 128 -> 256
    upscale of the output loses (measured in docs/codec.md)."""
    if mask is None or pixels is None:
        return rgb
    size = pixels.shape[-2:]
    if rgb.shape[-2:] != size:
        rgb = F.interpolate(rgb, size=size, mode="bilinear", align_corners=ALIGN_CORNERS)
        mask = F.interpolate(mask, size=size, mode="bilinear", align_corners=ALIGN_CORNERS)
    return mask * pixels + (1.0 - mask) * rgb


class FrontalizerReceiver(nn.Module):
    def __init__(self, layout: KeypointLayout, config: ModelConfig, resolution: int,
                 reference_init: Tensor | None = None):
        """``resolution``: the side of the images the networks take; ``reference_init``:
        p_r's start (:class:`Frontalizer`)."""
        super().__init__()
        self.layout = layout
        fres, var = config.feature_res, config.kp_variance
        self.encoder = Encoder(config.encoder, resolution, fres)
        c = self.encoder.out_channels
        self.frontalizer = Frontalizer(config.frontalizer, layout.num_kp, c, var, reference_init)
        self.dense_motion = DenseMotion(config.dense_motion, layout.num_kp, c, var)
        check_part_maps(config, layout)
        self.decoder = Decoder(config.decoder, c, layout.expr_dim, fres, resolution)

    @property
    def pixel_blend(self) -> bool:
        return self.decoder.blend is not None

    @property
    def mixes_sources(self) -> bool:
        """Whether ``render`` takes a per-frame ``source_mix`` (with the pixel blend)."""
        return self.pixel_blend

    def embed_sources(self, images: Tensor, values: Values,
                      pixels: Tensor | None = None) -> SourceCache:
        """images (B, N, 3, H, W) in [0, 1] at the model's resolution; values with leading
        (B, N); ``pixels``: the same frames at the output size for the pixel blend
        (default: ``images``; see :func:`blend_output`)."""
        b, n = images.shape[:2]
        feats = self.encoder(images.flatten(0, 1))
        feats = feats.reshape(b, n, *feats.shape[1:])
        kp, jac = assemble(self.layout, values)
        fr = self.frontalizer(feats, kp, jac)
        if not self.pixel_blend:
            return SourceCache(fr.embedding)
        return SourceCache(fr.embedding, images if pixels is None else pixels,
                           fr.flows.permute(0, 1, 4, 2, 3), fr.weights)

    def render(self, cache: SourceCache, values: Values,
               source_mix: Tensor | None = None) -> RenderOutput:
        """values with leading (B,): the driving frame's sup/iris/unsup/jac/expr.
        ``source_mix`` (B, N): per-frame factors on the sources' pixel weights, the
        receiver's pose weighting (facecodec/receiver/mixing.py); None in training."""
        kp_d, jac_d = assemble(self.layout, values)
        ref = self.frontalizer.reference.unsqueeze(0).expand_as(kp_d)
        motion = self.dense_motion(cache.embedding, ref, kp_d, identity_jacobians(ref), jac_d)
        warped = warp(cache.embedding, motion.flow) * motion.occlusion
        rgb, mask = self.decoder(warped, values.get("expr"), values.get("sup"))
        pixels = (self._warp_source_pixels(cache, motion.flow, source_mix)
                  if mask is not None else None)
        return RenderOutput(blend_output(rgb, mask, pixels), rgb, mask, pixels,
                            motion.occlusion, motion.flow)

    def forward(self, images: Tensor, src_values: Values, values: Values) -> Tensor:
        return self.render(self.embed_sources(images, src_values), values).image

    def _warp_source_pixels(self, cache: SourceCache, flow: Tensor,
                            source_mix: Tensor | None = None) -> Tensor:
        """Compose driving -> reference (``flow``) with reference -> source i (cached), warp
        each source image at full resolution and blend them with the Frontalizer weights
        carried to the driving position, times ``source_mix`` (B, N) when given."""
        assert cache.images is not None and cache.flows is not None and cache.weights is not None
        b, n, _, h, w = cache.flows.shape
        big_h, big_w = cache.images.shape[-2:]
        flow_n = flow.unsqueeze(1).expand(b, n, h, w, 2).reshape(b * n, h, w, 2)
        composed = warp(cache.flows.reshape(b * n, 2, h, w), flow_n, "border")
        composed = resize_flow(composed.permute(0, 2, 3, 1), big_h, big_w)
        pixels = warp(cache.images.reshape(b * n, 3, big_h, big_w), composed, "border",
                      self.decoder.pixel_warp)
        weights = warp(cache.weights, flow, "border")
        if source_mix is not None:
            weights = weights * source_mix[:, :, None, None]
        weights = F.interpolate(weights, size=(big_h, big_w), mode="bilinear",
                                align_corners=ALIGN_CORNERS)
        weights = weights / weights.sum(dim=1, keepdim=True).clamp(min=1e-6)
        return (pixels.reshape(b, n, 3, big_h, big_w) * weights.unsqueeze(2)).sum(dim=1)

