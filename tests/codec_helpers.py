"""A small random-weight model package + untrained prior, and the shippable example video,
so the end-to-end tests need neither a trained model nor ../shared."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import torch
from training_helpers import tiny_config

from facecodec.bitstream.prior import Prior
from facecodec.bitstream.streams import TABLES
from facecodec.config import Config
from facecodec.models.registry import build_model
from facecodec.training.export import write_package


def make_package(root: Path, name: str = "tiny_codec", seed: int = 0) -> tuple[Path, Path]:
    """models dir holding a Sup+Unsup+Expr model with the bitstream's stream sizes (10
    keypoints, 16 expression codes) at 64x64 and its untrained prior (in the model's
    folder, as fit-priors puts it), and an empty priors dir (for $FACECODEC_PRIORS)."""
    torch.manual_seed(seed)
    cfg = replace(tiny_config("model.num_unsup=10", "model.expr_dim=16"), name=name)
    dest = save_package(cfg, root / "models" / name)
    Prior.untrained(TABLES["sup_unsup_expr"], name=name).save(dest / "prior.json")
    priors = root / "priors"
    priors.mkdir(exist_ok=True)
    return root / "models", priors


def save_package(cfg: Config, dest: Path) -> Path:
    """A model directory (config.yaml + sender/receiver safetensors) of a random-weight
    model built from ``cfg`` (seed the RNG first)."""
    return write_package(build_model(cfg).eval(), cfg, dest)


@contextlib.contextmanager
def model_env(models: Path | str, priors: Path | str) -> Iterator[None]:
    """$FACECODEC_MODELS and $FACECODEC_PRIORS set to these (colon-separated folders
    allowed) while the block runs, as they were after it."""
    old = {k: os.environ.get(k) for k in ("FACECODEC_MODELS", "FACECODEC_PRIORS")}
    os.environ["FACECODEC_MODELS"], os.environ["FACECODEC_PRIORS"] = str(models), str(priors)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
