"""The learned half of the sender: the keypoint detector with its Jacobians and the
expression code (Oquab et al. 2022, 3.2.2), run on face-tube crops."""

from __future__ import annotations

import numpy as np
import torch

from facecodec.models.blocks import resize_image
from facecodec.models.inference import prepare_for_inference
from facecodec.models.package import ModelPackage
from facecodec.models.registry import load_model


class SenderNetwork:
    """Face-tube crops -> the model's learned values (``unsup``, ``jac``, ``expr``; none
    for the Sup variant). Loads only ``sender.safetensors``."""

    def __init__(self, package: ModelPackage):
        self.package = package
        self.model = prepare_for_inference(load_model(package.path, parts=("sender",)).sender)
        self.resolution = package.resolution
        self.active = any(True for _ in self.model.parameters())

    @torch.inference_mode()
    def __call__(self, tubes: np.ndarray) -> dict[str, np.ndarray]:
        """tubes (B, S, S, 3) uint8 -> {name: (B, ...) float32}."""
        if not self.active:
            return {}
        tubes = np.ascontiguousarray(tubes)
        if not tubes.flags.writeable:  # a memory-mapped cache: torch wants its own copy
            tubes = tubes.copy()
        x = torch.from_numpy(tubes).permute(0, 3, 1, 2).float() / 255
        out = self.model(resize_image(x, self.resolution))
        return {k: v.numpy().astype(np.float32) for k, v in out.items()}
