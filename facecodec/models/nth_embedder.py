"""The few-shot talking-heads embedder E(x, y) (Zakharov et al. 2019, section 3.2): a frame
and its landmark sketch -> a vector e^ that should say who the person is and not how
they pose; a person's embedding is the mean over their K frames (eq. 1).

Spectral-normalised residual downsampling blocks to 4x4, ReLU, a global sum pooling and a
linear map to ``embed_dim`` (the paper pools to its 512 channels directly).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from facecodec.config.model import NthConfig
from facecodec.models.blocks import log2_int
from facecodec.models.nth_blocks import ResDown, widths
from facecodec.models.sketch import NUM_CHANNELS


class SketchEncoder(nn.Module):
    """(image, sketch) -> a pooled vector: the trunk the embedder and the projection
    discriminator share in design (not in weights). Returns every block's output too."""

    def __init__(self, config: NthConfig, resolution: int, out_dim: int):
        super().__init__()
        n = log2_int(resolution, "the model resolution") - 2  # down to 4x4
        # half the generator's widths: these trunks only pool to a vector, and with their
        # optimiser states they dominated the checkpoint (docs/training.md)
        chans = [3 + NUM_CHANNELS, *widths(config.base // 2, config.max_channels // 2, n)]
        self.blocks = nn.ModuleList(ResDown(a, b, norm=False, sn=True)
                                    for a, b in zip(chans[:-1], chans[1:], strict=True))
        self.out = spectral_norm(nn.Linear(chans[-1], out_dim))

    def forward(self, image: Tensor, sketch: Tensor) -> tuple[list[Tensor], Tensor]:
        x = torch.cat([image, sketch], dim=1)
        feats = []
        for block in self.blocks:
            x = block(x)
            feats.append(x)
        pooled = torch.relu(x).sum(dim=(2, 3))
        return feats, self.out(pooled)


class NthEmbedder(nn.Module):
    def __init__(self, config: NthConfig, resolution: int):
        super().__init__()
        self.trunk = SketchEncoder(config, resolution, config.embed_dim)

    def forward(self, images: Tensor, sketches: Tensor) -> Tensor:
        """(B, N, 3, H, W) frames, (B, N, C, H, W) their sketches -> (B, embed_dim), the
        mean of the N frames' vectors (eq. 1)."""
        b, n = images.shape[:2]
        _, e = self.trunk(images.flatten(0, 1), sketches.flatten(0, 1))
        return e.unflatten(0, (b, n)).mean(dim=1)
