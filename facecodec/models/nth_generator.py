"""The few-shot talking-heads generator G(y, psi) (Zakharov et al. 2019, section 3.2): a
landmark sketch in, a frame out; the person enters only through psi, the AdaIN parameters
of its decoder, projected from the embedder's vector (psi^ = P e^, eq. 2).

The encoder (instance norm) reduces the sketch to resolution / 2**down_blocks; AdaIN
residual blocks at that size and AdaIN upsampling blocks bring it back to the resolution.
No self-attention (the paper has two): a CPU-sized model.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from facecodec.config.model import NthConfig
from facecodec.models.nth_blocks import ResAdaIN, ResDown, adain, widths
from facecodec.models.sketch import NUM_CHANNELS


class NthGenerator(nn.Module):
    def __init__(self, config: NthConfig):
        super().__init__()
        c = config
        self.stem = nn.Conv2d(NUM_CHANNELS, c.base, 3, padding=1)
        chans = [c.base, *widths(c.base, c.max_channels, c.down_blocks)]
        self.down = nn.ModuleList(ResDown(a, b, norm=True, sn=False)
                                  for a, b in zip(chans[:-1], chans[1:], strict=True))
        top = chans[-1]
        self.middle = nn.ModuleList(ResAdaIN(top, top, up=False) for _ in range(c.res_blocks))
        self.up = nn.ModuleList(ResAdaIN(a, b, up=True)
                                for a, b in zip(chans[:0:-1], chans[-2::-1], strict=True))
        self.head = nn.Conv2d(c.base, 3, 3, padding=1)
        self.head_size = 2 * c.base
        self.blocks = [*self.middle, *self.up]
        self.num_params = sum(sum(b.sizes) for b in self.blocks) + self.head_size
        """Length of psi: every AdaIN layer's (gamma, beta), the head's last."""

    def forward(self, sketch: Tensor, psi: Tensor) -> Tensor:
        """(B, NUM_CHANNELS, H, W) sketch, (B, num_params) psi -> (B, 3, H, W) in [0, 1]."""
        x = self.stem(sketch)
        for block in self.down:
            x = block(x)
        at = 0
        for block in self.blocks:
            n = sum(block.sizes)
            x = block(x, psi[:, at: at + n])
            at += n
        x = torch.relu(adain(x, psi[:, at:]))
        return torch.sigmoid(self.head(x))
