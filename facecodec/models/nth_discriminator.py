"""The projection discriminator D(x, y, i) of the few-shot talking-heads model (Zakharov et
al. 2019, section 3.2, eq. 6; Miyato & Koyama 2018): a frame and its landmark sketch ->
a vector v; its realism for video i is v . (W_i + w_0) + b. Training only.

W has a row per training video; the embedding-matching loss pulls W_i towards the
embedder's e^_i (eq. 5), so that for a person never seen (few-shot fine-tuning) e^ can
stand in for the missing row.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from facecodec.config.model import NthConfig
from facecodec.models.nth_embedder import SketchEncoder


class ProjectionDiscriminator(nn.Module):
    def __init__(self, config: NthConfig, resolution: int, num_videos: int):
        super().__init__()
        d = config.embed_dim
        self.trunk = SketchEncoder(config, resolution, d)
        self.W = nn.Parameter(torch.randn(num_videos, d) * 0.02)
        self.w0 = nn.Parameter(torch.zeros(d))
        self.b = nn.Parameter(torch.zeros(()))

    def forward(self, image: Tensor, sketch: Tensor, video: Tensor | None = None,
                row: Tensor | None = None) -> tuple[list[Tensor], Tensor]:
        """-> (the blocks' outputs for feature matching, (B,) realism). The video's row
        is ``W[video]``, or ``row`` (B, d) given instead (fine-tuning: e^)."""
        feats, v = self.trunk(image, sketch)
        w = self.W[video] if row is None else row
        return feats, (v * (w + self.w0)).sum(dim=-1) + self.b
