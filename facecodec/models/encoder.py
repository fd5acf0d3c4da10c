"""Source-frame encoder Enc: image -> feature map e^{p_i} = Enc(x_i) (Oquab et al. eq. of
section 3.2.1; appendix 6.1: "(3, 256, 256) ... outputs a feature map of size (32, 32, 32)").

The stride is set by ``feature_res``: 256 -> 32 is 3 halvings, 128 -> 32 is 2, so a 128x128
training run keeps the 32x32 motion resolution of the paper's mobile models.
"""

from __future__ import annotations

from torch import Tensor, nn

from facecodec.config import EncoderConfig
from facecodec.models.blocks import ConvBNReLU, InvertedResidual, log2_int


class Encoder(nn.Module):
    """MobileNetV2-style: a stride-2 stem, stride-2 inverted residual blocks doubling the width
    from ``base`` up to ``max_channels``, ``res_blocks`` blocks at the feature resolution and a
    linear 1x1 projection to ``out_channels`` (linear: the features are warped and blended,
    a ReLU would waste half of them)."""

    def __init__(self, config: EncoderConfig, image_res: int, feature_res: int):
        super().__init__()
        n_down = log2_int(image_res // feature_res, "image_res / feature_res")
        if n_down < 1:
            raise ValueError("the encoder needs image_res > feature_res")
        widths = [min(config.max_channels, config.base * 2**i) for i in range(n_down)]
        expansion = config.expansion
        layers: list[nn.Module] = [ConvBNReLU(3, widths[0], 3, stride=2)]
        for i in range(1, n_down):
            layers.append(InvertedResidual(widths[i - 1], widths[i], 2, expansion))
        layers += [InvertedResidual(widths[-1], widths[-1], 1, expansion)
                   for _ in range(config.res_blocks)]
        layers.append(nn.Conv2d(widths[-1], config.out_channels, 1))
        self.net = nn.Sequential(*layers)
        self.out_channels = config.out_channels

    def forward(self, image: Tensor) -> Tensor:
        return self.net(image)
