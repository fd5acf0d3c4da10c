"""Inference rewrites keep the networks' outputs."""

import copy

import pytest
import torch
from training_helpers import random_values, tiny_config

from facecodec.models.inference import fuse_batchnorm, prepare_for_inference
from facecodec.models.registry import build_model


def test_inference_rewrites_render_the_same_image():
    torch.manual_seed(0)
    model = build_model(tiny_config()).eval()
    for m in model.modules():  # statistics as after training, not the identity of init
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    fused = fuse_batchnorm(copy.deepcopy(model))
    nhwc = prepare_for_inference(copy.deepcopy(model))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    g = torch.Generator().manual_seed(1)
    layout = model.receiver.layout
    images = torch.rand(1, 2, 3, 64, 64, generator=g)
    src = random_values(layout, (1, 2), g)
    drv = random_values(layout, (1,), g)
    for v in (src, drv):
        v.update({k: t for k, t in model.sender(images[:, 0]).items()})
    src = {k: (t.unsqueeze(1).expand(1, 2, *t.shape[1:]) if k in ("unsup", "jac", "expr")
               else t) for k, t in src.items()}
    with torch.inference_mode():
        a = model.receiver(images, src, drv)
        b = fused.receiver(images, src, drv)
        c = nhwc.receiver(images, src, drv)
        sa, sb = model.sender(images[:, 0]), fused.sender(images[:, 0])
        sc = nhwc.sender(images[:, 0])
    assert torch.allclose(a, b, atol=1e-4)
    assert torch.allclose(a, c, atol=1e-4)  # channels-last: the same numbers, reordered
    for k in sa:
        assert torch.allclose(sa[k], sb[k], atol=1e-4), k
        assert torch.allclose(sa[k], sc[k], atol=1e-4), k


def test_fuse_refuses_training_mode():
    with pytest.raises(ValueError, match="eval"):
        fuse_batchnorm(build_model(tiny_config()).train())
