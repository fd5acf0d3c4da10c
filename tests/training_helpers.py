"""Shared helpers of the model/training tests: the tiny config and random inputs."""

from __future__ import annotations

from pathlib import Path

import torch

from facecodec.config import Config
from facecodec.models.layout import KeypointLayout
from facecodec.training.config import load_config

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "configs" / "tiny_test.yaml"


def tiny_config(*overrides: str) -> Config:
    return load_config(TINY, list(overrides))


def random_values(layout: KeypointLayout, lead: tuple[int, ...], gen: torch.Generator
                  ) -> dict[str, torch.Tensor]:
    """Landmark values in [-0.8, 0.8] (what the tracker gives the receiver)."""
    v = {}
    if layout.sup:
        v["sup"] = (torch.rand(*lead, 33, 2, generator=gen) * 2 - 1) * 0.8
    if layout.iris:
        v["iris"] = (torch.rand(*lead, 2, 2, generator=gen) * 2 - 1) * 0.8
    return v


def random_batch(cfg: Config, batch: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    """A batch shaped like facecodec.training.data.to_tensors output."""
    gen = torch.Generator().manual_seed(seed)
    r = cfg.data.resolution
    n, d = cfg.data.num_sources, cfg.data.num_drivers
    out = {"sources": torch.rand(batch, n, 3, r, r, generator=gen),
           "drivers": torch.rand(batch, d, 3, r, r, generator=gen)}
    for side, k in (("src", n), ("drv", d)):
        out[f"{side}_sup"] = (torch.rand(batch, k, 33, 2, generator=gen) * 2 - 1) * 0.8
        out[f"{side}_iris"] = (torch.rand(batch, k, 2, 2, generator=gen) * 2 - 1) * 0.8
    return out
