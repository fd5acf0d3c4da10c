"""LPIPS v0.1 with the AlexNet backbone (Zhang et al. 2018), the validation metric of the
paper's tables, from the ImageNet AlexNet and linear heads in ``alexnet.ckpt``
(facecodec/training/weights.py). Same computation as the reference: inputs mapped to
[-1, 1], LPIPS scaling layer, the five ReLU outputs unit-normalised over channels, squared
differences weighted by the non-negative 1x1 heads, spatial mean, summed over layers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facecodec.training.weights import load_checkpoint

SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
# (out channels, kernel, stride, padding) of torchvision/LPIPS AlexNet "features"
ALEX = [(64, 11, 4, 2), (192, 5, 1, 2), (384, 3, 1, 1), (256, 3, 1, 1), (256, 3, 1, 1)]


class LPIPSAlex(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        convs, cin = [], 3
        for cout, k, s, p in ALEX:
            convs.append(nn.Conv2d(cin, cout, k, s, p))
            cin = cout
        self.convs = nn.ModuleList(convs)
        self.heads = nn.ParameterList(
            nn.Parameter(torch.zeros(1, c, 1, 1), requires_grad=False) for c, *_ in ALEX)
        self.register_buffer("shift", torch.tensor(SHIFT).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).reshape(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)

    @classmethod
    def pretrained(cls) -> LPIPSAlex:
        net = cls()
        ckpt = load_checkpoint("alexnet")
        with torch.no_grad():
            for i, conv in enumerate(net.convs):
                kernel = torch.from_numpy(ckpt[f"AlexNet_0/Conv_{i}/kernel"])
                conv.weight.copy_(kernel.permute(3, 2, 0, 1))
                conv.bias.copy_(torch.from_numpy(ckpt[f"AlexNet_0/Conv_{i}/bias"]))
                head = torch.from_numpy(ckpt[f"NetLinLayer_{i}/Conv_0/kernel"])
                net.heads[i].copy_(head.reshape(1, -1, 1, 1))
        return net.eval()

    def features(self, x: Tensor) -> list[Tensor]:
        x = ((x * 2.0 - 1.0) - self.shift) / self.scale
        outs = []
        for i, conv in enumerate(self.convs):
            if i in (1, 2):  # max pools after relu1 and relu2
                x = F.max_pool2d(x, 3, 2)
            x = F.relu(conv(x))
            outs.append(x)
        return outs

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """x, y (B, 3, H, W) in [0, 1] -> (B,) distances."""
        total = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for fx, fy, head in zip(self.features(x), self.features(y), self.heads, strict=True):
            nx = fx / (fx.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            ny = fy / (fy.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + ((nx - ny) ** 2 * head).sum(1).mean(dim=(1, 2))
        return total


def psnr(x: Tensor, y: Tensor) -> Tensor:
    """(B,) PSNR in dB of images in [0, 1]."""
    mse = ((x - y) ** 2).flatten(1).mean(1).clamp(min=1e-10)
    return -10.0 * torch.log10(mse)
