"""Periodic validation on a fixed set of val samples: LPIPS-alex, PSNR and L1 of the
reconstructions, beside the same metrics for the held first source frame (the zero-bit
baseline every method must be reported next to, shared/ENVIRONMENT.md). Landmark error
needs the tracker on the outputs and is left to the evaluation scripts.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import default_collate

from facecodec.models.base import FaceAnimationModel
from facecodec.training.data import ClipStore, FrameSampleDataset, to_tensors
from facecodec.training.lpips import LPIPSAlex, psnr


class Validator:
    def __init__(self, cfg: dict, store: ClipStore, out: Path):
        vc = cfg["validation"]
        self.out = out
        self.save_images = bool(vc["save_images"])
        split = "val" if store.split("val") else "train"
        if split == "train":
            warnings.warn("no val clips in the cache: validating on train clips", stacklevel=2)
        ds = FrameSampleDataset(store, cfg["data"], split, int(cfg["seed"]) + 10_007,
                                augment=False, flip_perm=None)
        samples = [ds[n] for n in range(int(vc["num_samples"]))]
        bs = int(vc["batch_size"])
        self.batches = [to_tensors(default_collate(samples[i:i + bs]))
                        for i in range(0, len(samples), bs)]
        self.lpips = LPIPSAlex.pretrained() if vc["lpips"] else None
        self.held: dict[str, float] | None = None

    def _metrics(self, pred: Tensor, target: Tensor) -> dict[str, Tensor]:
        m = {"psnr": psnr(pred, target), "l1": (pred - target).abs().flatten(1).mean(1)}
        if self.lpips is not None:
            m["lpips"] = self.lpips(pred, target)
        return m

    @torch.no_grad()
    def run(self, model: FaceAnimationModel, step: int) -> dict[str, float]:
        model.eval()
        acc: dict[str, list[Tensor]] = {}
        held: dict[str, list[Tensor]] = {}
        first = None
        for batch in self.batches:
            out = model.training_forward(batch)
            for k, v in self._metrics(out.prediction, out.target).items():
                acc.setdefault(k, []).append(v)
            if self.held is None:
                d = batch["drivers"].shape[1]
                src0 = batch["sources"][:, 0].repeat_interleave(d, dim=0)
                for k, v in self._metrics(src0, out.target).items():
                    held.setdefault(k, []).append(v)
            if first is None:
                first = (batch, out.prediction)
        if self.held is None:
            self.held = {f"held_{k}": float(torch.cat(v).mean()) for k, v in held.items()}
        result = {k: float(torch.cat(v).mean()) for k, v in acc.items()}
        result.update(self.held)
        if self.save_images and first is not None:
            self._save_grid(*first, step)
        return result

    def _save_grid(self, batch: dict[str, Tensor], pred: Tensor, step: int) -> None:
        """Rows: sources..., drivers..., predictions... for up to 4 samples."""
        b, d = batch["drivers"].shape[:2]
        n = min(4, b)
        rows = [batch["sources"][:n, i] for i in range(batch["sources"].shape[1])]
        rows += [batch["drivers"][:n, i] for i in range(d)]
        pred = pred.reshape(b, d, *pred.shape[1:])
        rows += [pred[:n, i] for i in range(d)]
        grid = torch.cat([torch.cat(list(r), dim=2) for r in rows], dim=1)
        img = (grid.permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
        self.out.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(self.out / f"val_{step:07d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
