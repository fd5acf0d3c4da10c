"""Residual blocks of the few-shot talking-heads networks (Zakharov et al. 2019, section 3.1
and appendix: "residual downsampling blocks", "residual upsampling blocks", adaptive
instance normalisation in the generator's decoder; after BigGAN's blocks).

Plain 3x3 convolutions, not the MobileNetV2 blocks of the Frontalizer: the paper's
architecture, CPU-sized by its widths (facecodec.config.NthConfig).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm


def _maybe_sn(module: nn.Module, sn: bool) -> nn.Module:
    return spectral_norm(module) if sn else module


class ResDown(nn.Module):
    """x -> (conv-norm-relu-conv-norm)(x) + 1x1(x), then 2x2 average pooling (``down``).
    ``norm``: instance norm (the generator's encoder) or none (the embedder and the
    discriminator, which are spectral-normalised instead)."""

    def __init__(self, cin: int, cout: int, norm: bool, sn: bool, down: bool = True):
        super().__init__()
        self.conv1 = _maybe_sn(nn.Conv2d(cin, cout, 3, padding=1), sn)
        self.conv2 = _maybe_sn(nn.Conv2d(cout, cout, 3, padding=1), sn)
        self.skip = _maybe_sn(nn.Conv2d(cin, cout, 1), sn)
        self.norm1 = nn.InstanceNorm2d(cout, affine=True) if norm else nn.Identity()
        self.norm2 = nn.InstanceNorm2d(cout, affine=True) if norm else nn.Identity()
        self.down = down

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.relu(x))
        h = self.conv2(F.relu(self.norm1(h)))
        out = self.norm2(h) + self.skip(x)
        return F.avg_pool2d(out, 2) if self.down else out


def adain(x: Tensor, params: Tensor) -> Tensor:
    """Adaptive instance norm (Huang & Belongie 2017): x normalised per sample and channel,
    scaled by (1 + gamma) and shifted by beta; ``params`` (B, 2C) = [gamma, beta]."""
    c = x.shape[1]
    mean = x.mean(dim=(2, 3), keepdim=True)
    var = x.var(dim=(2, 3), keepdim=True, unbiased=False)
    xn = (x - mean) / (var + 1e-5).sqrt()
    gamma, beta = params[:, :c, None, None], params[:, c:, None, None]
    return xn * (1 + gamma) + beta


class ResAdaIN(nn.Module):
    """x -> conv(relu(AdaIN(conv(relu(AdaIN(x)))))) + skip(x), nearest 2x upsampling first
    when ``up``. Its AdaIN parameters are a slice of the projected embedding: ``sizes``."""

    def __init__(self, cin: int, cout: int, up: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        self.up = up
        self.sizes = (2 * cin, 2 * cout)

    def forward(self, x: Tensor, params: Tensor) -> Tensor:
        if self.up:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        p1, p2 = params[:, : self.sizes[0]], params[:, self.sizes[0]:]
        h = self.conv1(F.relu(adain(x, p1)))
        h = self.conv2(F.relu(adain(h, p2)))
        return h + self.skip(x)


def widths(base: int, max_channels: int, n: int) -> list[int]:
    """Channels after each of ``n`` stride-2 blocks: base * 2, base * 4, ..., capped."""
    return [min(max_channels, base * 2 ** (i + 1)) for i in range(n)]
