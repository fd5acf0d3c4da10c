"""Multiply-accumulates of one call of an exported network, measured by running it under
``torch.utils.flop_counter.FlopCounterMode`` (a dispatch-level counter that ships with torch).

Two numbers, because they cost differently on a phone:
- ``dense``: convolutions, linear layers and matrix products (torch's own formulas,
  FLOPs / 2). This is what a GPU's MAC throughput bounds, and what
  ``facecodec.models.profile.count_macs`` counts with module hooks.
- ``sampling``: taps of ``grid_sample`` (4 per output element bilinear, 16 bicubic) and
  of bilinear resizes (4). Memory-bound gathers, not MAC-bound, and the op Core ML keeps in FP32.
Elementwise work (activations, norms, softmax, Gaussians) is left out of both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from facecodec.export.wrappers import ExportNetwork

aten = torch.ops.aten


@dataclass(frozen=True)
class Macs:
    dense: int
    sampling: int

    @property
    def total(self) -> int:
        return self.dense + self.sampling


def _bilinear_taps(*_: Any, out_shape: Any = None, **__: Any) -> int:
    """4 taps per output element, reported as FLOPs (2 per MAC) like torch's formulas."""
    return 2 * 4 * int(torch.Size(out_shape).numel())


GRID_SAMPLER_TAPS = {0: 4, 1: 1, 2: 16}  # interpolation_mode: bilinear, nearest, bicubic


def _grid_sampler_taps(_input: Any, _grid: Any, mode: int, *_: Any, out_shape: Any = None,
                       **__: Any) -> int:
    """As :func:`_bilinear_taps`, with the taps of the sampler's mode (the bicubic pixel
    warp reads 4 x 4 pixels per output element)."""
    return 2 * GRID_SAMPLER_TAPS[int(mode)] * int(torch.Size(out_shape).numel())


SAMPLING_OPS = (aten.grid_sampler_2d, aten.upsample_bilinear2d, aten._upsample_bilinear2d_aa)


def count(net: ExportNetwork, inputs: tuple[torch.Tensor, ...] | None = None) -> Macs:
    """MACs of one call of ``net`` on ``inputs`` (default: its example inputs; the count
    depends only on the shapes)."""
    formulas = {op: _bilinear_taps for op in SAMPLING_OPS}
    formulas[aten.grid_sampler_2d] = _grid_sampler_taps
    mode = FlopCounterMode(display=False, custom_mapping=formulas)
    # not under no_grad: FlopCounterMode's module tracker then trips on parameters that
    # require grad without a grad_fn (torch 2.13)
    with mode:
        net.module(*(inputs if inputs is not None else net.example_inputs()))
    per_op = mode.get_flop_counts()["Global"]
    sampling = sum(v for k, v in per_op.items() if k in SAMPLING_OPS)
    dense = sum(per_op.values()) - sampling
    return Macs(dense // 2, sampling // 2)
