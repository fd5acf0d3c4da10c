"""Multi-scale patch discriminator with spectral norm (FOM ``MultiScaleDiscriminator``;
Oquab et al. appendix 6.1.3: adversarial and feature-matching losses "with the same
hyper-parameters as defined in [15]"). Training only: never exported to the codec."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from facecodec.config import DiscriminatorConfig


class PatchDiscriminator(nn.Module):
    """4x4 convs (spectral-normalised), instance norm after the first, leaky ReLU, 2x2
    average pooling; a 1x1 conv gives a map of real/fake logits, one per patch."""

    def __init__(self, base: int, max_channels: int, num_blocks: int):
        super().__init__()
        blocks = []
        cin = 3
        for i in range(num_blocks):
            cout = min(max_channels, base * 2**i)
            blocks.append(nn.ModuleDict({
                "conv": spectral_norm(nn.Conv2d(cin, cout, 4)),
                "norm": nn.InstanceNorm2d(cout, affine=True) if i else nn.Identity(),
            }))
            cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.head = spectral_norm(nn.Conv2d(cin, 1, 1))

    def forward(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        """-> (intermediate features for feature matching, logit map)."""
        feats = []
        for i, block in enumerate(self.blocks):
            x = F.leaky_relu(block["norm"](block["conv"](x)), 0.2)
            if i < len(self.blocks) - 1:
                x = F.avg_pool2d(x, 2)
            feats.append(x)
        return feats, self.head(x)


class MultiScaleDiscriminator(nn.Module):
    """One patch discriminator per pyramid scale (keys from ``scale_key``, as ``ImagePyramid``)."""

    def __init__(self, config: DiscriminatorConfig):
        super().__init__()
        self.scales = list(config.scales)
        self.nets = nn.ModuleDict({
            scale_key(s): PatchDiscriminator(config.base, config.max_channels, config.num_blocks)
            for s in self.scales})

    def forward(self, pyramid: dict[str, Tensor]) -> dict[str, tuple[list[Tensor], Tensor]]:
        return {k: net(pyramid[k]) for k, net in self.nets.items()}


def scale_key(scale: float) -> str:
    """ModuleDict-safe key of a pyramid scale (no dots): 0.5 -> "0_5"."""
    return str(float(scale)).replace(".", "_")
