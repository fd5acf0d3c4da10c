"""Inference-only rewrites of a trained network that keep its outputs (up to float
rounding): what the receiver and sender run per frame, not what training runs."""

from __future__ import annotations

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fuse_batchnorm(module: nn.Module) -> nn.Module:
    """Fold every BatchNorm2d that directly follows a Conv2d in a Sequential into the
    conv's weights and bias (eval-mode statistics), in place; returns ``module``.

    Batch norm at inference is a per-channel affine map, so it costs a full pass over
    the activations for nothing: ~10% of a 256x256 render on this CPU."""
    if module.training:
        raise ValueError("fuse_batchnorm needs a module in eval mode")
    for seq in [m for m in module.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for a, b in zip(names, names[1:], strict=False):
            conv, bn = seq._modules[a], seq._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                seq._modules[a] = fuse_conv_bn_eval(conv, bn)
                seq._modules[b] = nn.Identity()
    return module
