"""Shared fixtures of the export tests: a model package built from the shipped config with
random weights (no trained model needed), real face crops with their tracked landmarks,
and the CLI run as a user runs it.

Real crops come from a clip of shared/data/clips run through facecodec's sender front end
(MediaPipe, ~1 s), or else from the face-tube cache; nothing is written to the repo.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner, Result

from facecodec.cli import cli
from facecodec.models.registry import build_model
from facecodec.training.config import load_config
from facecodec.training.export import export_model

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_CONFIG = ROOT / "configs" / "frontalizer_sup_unsup_expr.yaml"
CLIP = ROOT.parent / "shared" / "data" / "clips" / "edtalk_expression_source.mp4"
CACHE = Path(os.environ.get("FACECODEC_DATA", Path.home() / ".cache" / "facecodec" / "data"))


@functools.cache
def real_frames(resolution: int) -> dict[str, np.ndarray]:
    """Face crops ``tube`` (T, R, R, 3) uint8 with ``sup`` (T, 33, 2), ``iris`` (T, 2, 2)
    and ``yaw`` (T,); skips the calling test when neither source of real faces exists."""
    if CLIP.is_file():
        from facecodec.sender.frontend import FrontEnd, stack
        from facecodec.sender.video import VideoReader

        # 3 fps over the whole clip (13 s, yaw -0.3 .. 0.3): head turns to pick from
        with FrontEnd() as fe, VideoReader(CLIP, fps=3) as video:
            s = stack([fe.process(f) for f in video], tubes=True)
        s = {k: s[k][s["valid"]] for k in ("tube", "sup", "iris", "yaw")}
    else:
        clips = sorted(CACHE.glob("*/meta.npz")) if CACHE.is_dir() else []
        if not clips:
            pytest.skip(f"no real face crops: neither {CLIP} (shared data next to the repo) "
                        f"nor a face-tube cache in {CACHE}")
        meta = clips[0]
        with np.load(meta) as z:
            s = {k: np.asarray(z[k]) for k in ("sup", "iris", "yaw", "valid")}
        tube = np.load(meta.parent / "tube256.npy", mmap_mode="r")
        idx = np.flatnonzero(s["valid"])[::15][:40]
        s = {"tube": np.asarray(tube[idx]), **{k: s[k][idx] for k in ("sup", "iris", "yaw")}}
    s["tube"] = np.stack([cv2.resize(f, (resolution, resolution), interpolation=cv2.INTER_AREA)
                          for f in s["tube"]])
    return s


def build_package(dest: Path, config: Path = SHIPPED_CONFIG, overrides: tuple[str, ...] = (),
                  seed: int = 0) -> Path:
    """A model package (models/<name>/ layout) with seeded random weights. The Frontalizer
    reference starts at a frontal-ish layout as in training (section 3.3): the landmarks of
    a real frame when there is one, so that the flows are plausible."""
    cfg = load_config(config, list(overrides))
    torch.manual_seed(seed)
    ref = None
    if cfg.family == "frontalizer":
        n_unsup = cfg.model.num_unsup
        try:
            frames = real_frames(cfg.data.resolution)
            lm = np.concatenate([frames["sup"], frames["iris"]], axis=1).mean(0)
            ref = torch.cat([torch.from_numpy(lm).float(), 0.1 * torch.randn(n_unsup, 2)])
        except pytest.skip.Exception:
            ref = None
    model = build_model(cfg, ref).eval()
    dest.parent.mkdir(parents=True, exist_ok=True)
    ckpt = dest.parent / f"{dest.name}.pt"
    torch.save({"step": 0, "config": cfg.to_dict(), "model": model.state_dict(),
                "world_size": 1},
               ckpt)
    return export_model(ckpt, dest)


def run_cli(*args: str) -> Result:
    """``facecodec ...`` in this process (a new interpreter would re-import torch,
    coremltools and the exporter: seconds per call)."""
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)
