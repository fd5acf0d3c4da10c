"""VGG16 feature extractor for the multi-scale perceptual loss (FOM section 3.3 uses VGG19;
we have VGG16 offline, see facecodec/training/weights.py), plus a tiny random-weight
stand-in so unit tests never need the download.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facecodec.training.weights import load_checkpoint

VGG16_LAYERS = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
TAPS = (1, 4, 8, 12, 16)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 (the LPIPS layers)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class FeatureNet(nn.Module):
    """A VGG-like stack of 3x3 conv + ReLU and 2x2 max pools, returning the ReLU outputs at
    ``taps``. Frozen; input in [0, 1], normalised with the ImageNet statistics (the same
    affine map as LPIPS's scaling layer on [-1, 1] input)."""

    def __init__(self, layers: list, taps: tuple[int, ...], num_outputs: int = 5):
        """``layers``: output channels of each conv, "M" for a max pool (VGG16_LAYERS)."""
        super().__init__()
        self.layers = layers
        self.taps = taps[:num_outputs]
        convs = []
        cin = 3
        for v in layers[: self.taps[-1] + 1]:
            if v != "M":
                convs.append(nn.Conv2d(cin, int(v), 3, padding=1))
                cin = int(v)
        self.convs = nn.ModuleList(convs)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).reshape(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).reshape(1, 3, 1, 1),
                             persistent=False)
        self.requires_grad_(False)
        self.eval()
        # frozen and internal, so always NHWC: ~10-25% faster convs on this CPU (oneDNN)
        self.to(memory_format=torch.channels_last)

    def train(self, mode: bool = True) -> FeatureNet:  # frozen: always eval
        return super().train(False)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
        outs = []
        conv = iter(self.convs)
        for i, v in enumerate(self.layers[: self.taps[-1] + 1]):
            x = F.max_pool2d(x, 2) if v == "M" else F.relu(next(conv)(x))
            if i in self.taps:
                outs.append(x)
        return outs


def vgg16_features(num_outputs: int = 5) -> FeatureNet:
    """ImageNet VGG16 up to the ``num_outputs``-th LPIPS layer (fewer layers = cheaper)."""
    net = FeatureNet(VGG16_LAYERS, TAPS, num_outputs)
    ckpt = load_checkpoint("vgg16")
    with torch.no_grad():
        for i, conv in enumerate(net.convs):
            kernel = torch.from_numpy(ckpt[f"VGG16_0/Conv_{i}/kernel"])  # HWIO -> OIHW
            conv.weight.copy_(kernel.permute(3, 2, 0, 1))
            conv.bias.copy_(torch.from_numpy(ckpt[f"VGG16_0/Conv_{i}/bias"]))
    return net


def tiny_random_features(num_outputs: int = 3, seed: int = 0) -> FeatureNet:
    """Random-weight 3-level VGG-like net for tests: a real, fixed, differentiable feature
    map whose losses vanish only for equal images."""
    net = FeatureNet([8, "M", 16, "M", 16], (0, 2, 4), min(num_outputs, 3))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for conv in net.convs:
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * 0.3)
            conv.bias.zero_()
    return net


def build_feature_net(name: str, num_outputs: int) -> FeatureNet:
    if name == "vgg16":
        return vgg16_features(num_outputs)
    if name == "random_tiny":
        return tiny_random_features(num_outputs)
    raise ValueError(f"unknown perceptual network '{name}' (vgg16 | random_tiny)")
