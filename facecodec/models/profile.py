"""Parameter counts, weight sizes and multiply-accumulate counts of the networks, for the
model card and for checking the mobile budget (appendix 6.1: real time on an iPhone 8).

MACs count convolutions and linear layers only (the rest - norms, activations, grid_sample -
is memory-bound and small next to them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def weights_mb(module: nn.Module) -> float:
    """Size of the float32 state (parameters and buffers) in MB (10^6 bytes)."""
    return sum(t.numel() * t.element_size() for t in module.state_dict().values()) / 1e6


def count_macs(module: nn.Module, fn: Callable[[], Any]) -> int:
    """Run ``fn()`` (which calls ``module`` or its children) and add up the MACs of every
    Conv2d / Linear inside ``module`` it ran."""
    total = [0]

    def conv_hook(m: nn.Conv2d, _: Any, out: Any) -> None:
        k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        total[0] += out.numel() * k

    def linear_hook(m: nn.Linear, _: Any, out: Any) -> None:
        total[0] += out.numel() * m.in_features

    handles = []
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    try:
        fn()
    finally:
        for h in handles:
            h.remove()
    return total[0]


def network_table(model: nn.Module) -> list[tuple[str, int, float]]:
    """(name, parameters, MB) for each network of a sender/receiver model."""
    rows = []
    for side in ("sender", "receiver"):
        part = getattr(model, side)
        for name, child in part.named_children():
            if parameter_count(child):
                rows.append((f"{side}.{name}", parameter_count(child), weights_mb(child)))
    return rows
