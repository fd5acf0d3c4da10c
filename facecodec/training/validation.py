"""Periodic validation on a fixed set of val samples: LPIPS-alex, PSNR and L1 of the
reconstructions, beside the same metrics for the held first source frame (the zero-bit
baseline every method must be reported next to, docs/environment.md). Landmark error
needs the tracker on the outputs and is left to the evaluation scripts.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import default_collate

from facecodec.config import Config, RegionsConfig
from facecodec.models.base import FaceAnimationModel
from facecodec.training.data import ClipStore, FrameSampleDataset, to_tensors
from facecodec.training.losses import crop_regions, region_boxes
from facecodec.training.lpips import LPIPSAlex, psnr
from facecodec.training.objective import new_parts_mask

# the boxes of losses.regions' defaults, whatever the run trains with: every run is scored
# on the same crops
EYE_BOX = RegionsConfig.eye_box
MOUTH_BOX = RegionsConfig.mouth_box


class Validator:
    def __init__(self, cfg: Config, store: ClipStore, out: Path):
        vc = cfg.validation
        self.out = out
        self.save_images = vc.save_images
        split = "val" if store.split("val") else "train"
        if split == "train":
            warnings.warn("no val clips in the cache: validating on train clips", stacklevel=2)
        # The fixed samples as every run has had them, and (keys prefixed "expr_") as many
        # whose last driver shows an expression its sources lack (data.pick_expressive):
        # the frames issue 19 is about, scored whatever the run samples in training.
        self.sets: dict[str, list[dict[str, Tensor]]] = {}
        for prefix, share in (("", 0.0), ("expr_", 1.0)):
            data = replace(cfg.data, expression_drivers=share)
            ds = FrameSampleDataset(store, data, split, cfg.seed + 10_007,
                                    augment=False, flip_perm=None)
            samples = [ds[n] for n in range(vc.num_samples)]
            bs = vc.batch_size
            self.sets[prefix] = [to_tensors(default_collate(samples[i:i + bs]))
                                 for i in range(0, len(samples), bs)]
        self.lpips = LPIPSAlex.pretrained() if vc.lpips else None
        self.held: dict[str, float] | None = None

    def _metrics(self, pred: Tensor, target: Tensor, sup: Tensor, details: object = None
                 ) -> dict[str, Tensor]:
        """Per-frame LPIPS, PSNR, L1, and the L1 of the eye and mouth crops (``sup``: the
        drivers' landmarks, (B * D, 33, 2)) that losses.regions trains on. With the pixel
        blend (``details``: the RenderOutput), on the same crops: the L1 of the decoder's
        drawing alone (``*_rgb_l1``) and the blend mask's mean (``*_mask``, the warp's
        share), to see whether the decoder, not the warp, draws the eyes and the mouth."""
        m = {"psnr": psnr(pred, target), "l1": (pred - target).abs().flatten(1).mean(1)}
        boxes = region_boxes(sup.to(pred.dtype), EYE_BOX, MOUTH_BOX)
        tcrops = crop_regions(target, boxes, 64)

        def per_region(crops: Tensor) -> tuple[Tensor, Tensor]:
            crops = crops.flatten(1).mean(1).reshape(len(pred), -1)
            return crops[:, :2].mean(1), crops[:, 2]

        m["eyes_l1"], m["mouth_l1"] = per_region((crop_regions(pred, boxes, 64) - tcrops).abs())
        if getattr(details, "blend", None) is not None:
            rgb = crop_regions(details.rgb, boxes, 64)
            m["eyes_rgb_l1"], m["mouth_rgb_l1"] = per_region((rgb - tcrops).abs())
            m["eyes_mask"], m["mouth_mask"] = per_region(crop_regions(details.blend, boxes, 64))
        if self.lpips is not None:
            m["lpips"] = self.lpips(pred, target)
        return m

    @torch.no_grad()
    def run(self, model: FaceAnimationModel, step: int) -> dict[str, float]:
        model.eval()
        result: dict[str, float] = {}
        held_now: dict[str, float] = {}
        for prefix, batches in self.sets.items():
            acc: dict[str, list[Tensor]] = {}
            held: dict[str, list[Tensor]] = {}
            for i, batch in enumerate(batches):
                out = model.training_forward(batch)
                sup = batch["drv_sup"].flatten(0, 1)
                for k, v in self._metrics(out.prediction, out.target, sup,
                                          out.details).items():
                    acc.setdefault(k, []).append(v)
                if getattr(out.details, "blend", None) is not None:
                    # the warp's share where the driver shows what no source does (a
                    # batch mean: what losses.regions.new_mask would pull towards 0)
                    acc.setdefault("new_mask", []).append(
                        new_parts_mask(batch, out).reshape(1))
                if self.held is None:
                    d = batch["drivers"].shape[1]
                    src0 = batch["sources"][:, 0].repeat_interleave(d, dim=0)
                    src0 = F.interpolate(src0, size=out.target.shape[-2:], mode="area") \
                        if src0.shape[-1] != out.target.shape[-1] else src0
                    for k, v in self._metrics(src0, out.target, sup).items():
                        held.setdefault(k, []).append(v)
                if i == 0 and self.save_images:
                    self._save_grid(batch, out.prediction, step, prefix)
            result.update({f"{prefix}{k}": float(torch.cat(v).mean()) for k, v in acc.items()})
            held_now.update({f"held_{prefix}{k}": float(torch.cat(v).mean())
                             for k, v in held.items()})
        if self.held is None:
            self.held = held_now
        result.update(self.held)
        return result

    def _save_grid(self, batch: dict[str, Tensor], pred: Tensor, step: int,
                   prefix: str = "") -> None:
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
        cv2.imwrite(str(self.out / f"val_{prefix}{step:07d}.png"),
                    cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
