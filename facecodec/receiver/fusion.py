"""The receiver's fusion of its animation with the stream's base layer (issue 20,
docs/enhancement.md): out = B + m (A - B) + r, learned (facecodec/models/enhancer.py).

The shipped weights are ``models/fusion_wide/`` (the second enhancement run, trained on
the default model's animations without the touch-up, base layers of 64-256 px at CRF
48-63 coded by SVT-AV1's random-access structure).
"""

from __future__ import annotations

import numpy as np
import torch

from facecodec.errors import InputError
from facecodec.models.enhancer import WEIGHTS, load_exported
from facecodec.models.inference import prepare_for_inference
from facecodec.resources import search_path

FUSION = "fusion_wide"
"""The shipped fusion network."""


def find_fusion(name: str = FUSION):
    """The fusion network ``name`` from the model folders, ready to run."""
    for folder in search_path("models"):
        path = folder / name
        if (path / WEIGHTS).is_file():
            net, _, _ = load_exported(path)
            return prepare_for_inference(net)
    raise InputError(f"no fusion network {name!r} installed (looked in "
                     f"{', '.join(str(d) for d in search_path('models'))})")


class Fusion:
    """One frame at a time: the animation and the enlarged base picture, both RGB uint8
    at the output size, -> the fused picture. ``net``: a network from :func:`find_fusion`
    to share (a stream's side and CRF are only its condition), else the shipped one."""

    def __init__(self, side: int, crf: int, net: torch.nn.Module | None = None):
        self.net = net if net is not None else find_fusion()
        self.side, self.crf = torch.tensor([float(side)]), torch.tensor([float(crf)])

    @torch.inference_mode()
    def __call__(self, anim: np.ndarray, base: np.ndarray) -> np.ndarray:
        a = torch.from_numpy(np.ascontiguousarray(anim)).permute(2, 0, 1)[None].float() / 255
        b = torch.from_numpy(np.ascontiguousarray(base)).permute(2, 0, 1)[None].float() / 255
        out = self.net(a, b, self.side, self.crf)[0]
        return (out.permute(1, 2, 0) * 255 + 0.5).clamp(0, 255).to(torch.uint8).numpy()
