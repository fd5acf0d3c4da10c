"""Keypoint-driven animation models: the FOM baseline and the Frontalizer variants.

Both run the same per-frame sender (keypoint detector + expression MLP) and differ in the
receiver. Training follows section 3.3: sources A (and C) are embedded once, every driving
frame (B1, B2) is rendered from that one cache.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from facecodec.config import ModelConfig
from facecodec.models.base import FaceAnimationModel, TrainOutput
from facecodec.models.blocks import resize_image
from facecodec.models.fom import FomReceiver
from facecodec.models.generator import FrontalizerReceiver
from facecodec.models.layout import KeypointLayout, Values
from facecodec.models.sender_model import SenderModel


class KeypointAnimationModel(FaceAnimationModel):
    max_sources: ClassVar[int | None] = None

    def __init__(self, config: ModelConfig, resolution: int,
                 reference_init: Tensor | None = None):
        super().__init__(config, resolution, reference_init)
        self.layout = KeypointLayout.from_config(config)
        self.sender = SenderModel(self.layout, resolution, config.keypoint_detector)
        self.receiver = self._build_receiver(reference_init)

    def _build_receiver(self, reference_init: Tensor | None) -> nn.Module:
        raise NotImplementedError

    def keypoint_detector(self) -> nn.Module | None:
        return self.sender.detector if self.layout.unsup else None

    def frame_values(self, batch: dict[str, Tensor]) -> tuple[Values, Values]:
        """Landmarks from the data, learned values from one sender pass over all frames.
        -> (source values with leading (B, N), driving values with leading (B * D,))."""
        src, drv = batch["sources"], batch["drivers"]
        b, n = src.shape[0], src.shape[1]
        sv: Values = {}
        dv: Values = {}
        for name in ("sup", "iris"):
            if getattr(self.layout, name):
                sv[name] = batch[f"src_{name}"]
                dv[name] = batch[f"drv_{name}"].flatten(0, 1)
        learned = self.sender(cat_frames(src, drv))
        for name, v in learned.items():
            sv[name] = v[: b * n].reshape(b, n, *v.shape[1:])
            dv[name] = v[b * n:]
        return sv, dv

    def training_forward(self, batch: dict[str, Tensor]) -> TrainOutput:
        if self.max_sources is not None:
            batch = {**batch, "sources": batch["sources"][:, : self.max_sources],
                     **{k: v[:, : self.max_sources] for k, v in batch.items()
                        if k.startswith("src_")}}
        sources, drivers = batch["sources"], batch["drivers"]
        pixels = sender_frames = None
        if sources.shape[-1] != self.resolution:
            # data.output_resolution: the networks see the frames at their resolution, the
            # pixel blend warps the sources at the display size (as facecodec.receiver)
            if not self.receiver.pixel_blend:
                raise ValueError(f"frames of {sources.shape[-1]} px for a {self.resolution} "
                                 "model: only a receiver with the pixel blend renders larger")
            pixels = sources
            batch = {**batch, "sources": _resized(sources, self.resolution),
                     "drivers": _resized(drivers, self.resolution)}
            sender_frames = batch["drivers"].flatten(0, 1)
        sv, dv = self.frame_values(batch)
        cache = self.receiver.embed_sources(batch["sources"], sv, pixels)
        out = self.receiver.render(cache.repeat(drivers.shape[1]), dv)
        learned = {k: dv[k] for k in ("unsup", "jac") if k in dv}
        return TrainOutput(out.image, drivers.flatten(0, 1), learned, {}, out, sender_frames)


def _resized(frames: Tensor, size: int) -> Tensor:
    """(B, F, 3, H, W) -> (B, F, 3, size, size)."""
    return resize_image(frames.flatten(0, 1), size).unflatten(0, frames.shape[:2])


def cat_frames(src: Tensor, drv: Tensor) -> Tensor:
    """(B, N, ...) and (B, D, ...) -> (B*N + B*D, ...) for one detector pass."""
    return torch.cat([src.flatten(0, 1), drv.flatten(0, 1)], dim=0)


class FomModel(KeypointAnimationModel):
    family = "fom"
    max_sources = 1

    def _build_receiver(self, reference_init: Tensor | None) -> nn.Module:
        return FomReceiver(self.layout, self.config, self.resolution)


class FrontalizerModel(KeypointAnimationModel):
    family = "frontalizer"
    uses_reference_init = True

    def _build_receiver(self, reference_init: Tensor | None) -> nn.Module:
        return FrontalizerReceiver(self.layout, self.config, self.resolution, reference_init)
