"""The enhancement layer's fusion network (issue 20, docs/enhancement.md).

The receiver has two pictures of the same instant: the animation ``A`` (the generator's
frame from the keypoint stream: sharp, the person's detail from the source frames, but a
warp: misplaced by a few pixels, and unable to draw what no source shows) and the base
``B`` (an SVT-AV1 stream of the face tube at low resolution and quality, enlarged to the
output size: the right structure, colours and expression, but blurred and blocky). This is
the HDAC idea (Konuko et al., hybrid deep animation codec): a conventional codec's
base layer fused with the animation, with the fusion learned.

The network sees both (and the base layer's size and CRF, which the receiver knows from
the stream) and returns

    out = B + m * (A - B) + r,    m = sigmoid(mask logit), r = 0.25 * tanh(residual)

per pixel: where to take the animation's pixels instead of the base's, and a bounded
correction for what neither has. A small U-Net of MobileNetV2 inverted residual blocks
(the generator's mobile blocks), down to a quarter of the side, fully convolutional: it
trains on crops and runs on whole frames.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from safetensors import safe_open
from safetensors.torch import load_file
from torch import Tensor, nn

from facecodec.models.blocks import ConvBNReLU, InvertedResidual

CRF_MAX = 63.0  # SVT-AV1's coarsest CRF: the condition is crf / CRF_MAX


class Enhancer(nn.Module):
    """(A, B, side, crf) -> the fused frame, all images (N, 3, H, W) in [0, 1], H and W
    multiples of 16.

    The work is done at half the side: the three pictures (A, B, A - B) are folded into
    channels (pixel unshuffle) and the head unfolds its output back (pixel shuffle,
    sub-pixel convolution), so no layer runs at the full 256x256 (~0.15 GMAC a frame)."""

    def __init__(self, width: int = 24, depth: int = 2, expansion: int = 4,
                 out_side: int = 256):
        super().__init__()
        w1, w2, w3 = width, width * 4 // 3, width * 2
        self.out_side = out_side
        self.stem = ConvBNReLU(9 * 4 + 2, w1, kernel=1)  # (A, B, A - B) unshuffled, side, crf
        self.down1 = InvertedResidual(w1, w2, stride=2, expansion=2)
        self.down2 = InvertedResidual(w2, w3, stride=2, expansion=2)
        self.middle = nn.Sequential(*[InvertedResidual(w3, w3, expansion=expansion)
                                      for _ in range(depth)])
        self.up2 = InvertedResidual(w3 + w2, w2, hidden=w3 + w2)
        self.up1 = InvertedResidual(w2 + w1, w1, hidden=w2 + w1)
        self.head = nn.Conv2d(w1, 4 * 4, 1)  # (mask, r, g, b) x 2x2 sub-pixels
        # start as the plain average of the two pictures, no correction
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, anim: Tensor, base: Tensor, side: Tensor, crf: Tensor) -> Tensor:
        """side, crf: (N,) the base layer's coded side (pixels) and CRF."""
        n, _, h, w = anim.shape
        cond = torch.stack([side.float() / self.out_side, crf.float() / CRF_MAX], 1)
        cond = cond.reshape(n, 2, 1, 1).expand(n, 2, h // 2, w // 2)
        folded = F.pixel_unshuffle(torch.cat([anim, base, anim - base], 1), 2)
        x0 = self.stem(torch.cat([folded, cond], 1))
        x1 = self.down1(x0)
        x2 = self.middle(self.down2(x1))
        y1 = self.up2(torch.cat([F.interpolate(x2, scale_factor=2.0, mode="nearest"), x1], 1))
        y0 = self.up1(torch.cat([F.interpolate(y1, scale_factor=2.0, mode="nearest"), x0], 1))
        head = F.pixel_shuffle(self.head(y0), 2)
        mask = torch.sigmoid(head[:, :1])
        correction = 0.25 * torch.tanh(head[:, 1:])
        return (base + mask * (anim - base) + correction).clamp(0.0, 1.0)


WEIGHTS = "enhancer.safetensors"
"""An exported fusion network's weight file, beside its ``config.yaml``."""


def load_exported(path: str | Path) -> tuple[Enhancer, dict, int]:
    """(net in eval mode, its config as stored, its training step) from an exported
    folder (``facecodec export-enhancer``; the shipped one is models/fusion_wide/)."""
    from facecodec.config.enhancer import EnhancerConfig  # noqa: PLC0415 - config only here

    path = Path(path)
    with open(path / "config.yaml") as f:
        raw = yaml.safe_load(f) or {}
    n = EnhancerConfig.from_dict(raw).net
    with safe_open(str(path / WEIGHTS), "pt") as f:
        step = int((f.metadata() or {}).get("step", -1))
    net = Enhancer(width=n.width, depth=n.depth, expansion=n.expansion)
    net.load_state_dict(load_file(str(path / WEIGHTS)))
    return net.eval(), raw, step
