"""Training of the enhancement layer's fusion network (issue 20; facecodec/models/enhancer.py).

The generator is frozen: what it draws for each training clip is precomputed, with the
SVT-AV1 base layers, by facecodec/training/enhance_data.py. A sample is a random crop of
one frame of one training clip with one of its base layers (enlarged to 256, bicubic, as
the receiver enlarges it), the original tube frame as the target.

Resumable bit for bit: sample ``k`` of step ``s`` is drawn from a generator seeded with
``(seed, s)``, so the batches do not depend on where a run was stopped; the checkpoint
holds the weights, the optimiser and the step. The run writes ``log.jsonl`` (losses every
``run.log_every`` steps, validation records) and ``checkpoint.pt`` into its folder.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import yaml
from safetensors.torch import save_file
from torch import Tensor
from tqdm import tqdm

from facecodec.config.enhancer import EnhancerConfig
from facecodec.errors import InputError
from facecodec.models.enhancer import WEIGHTS, Enhancer, load_exported
from facecodec.training.config import resolve_data_root
from facecodec.training.data import ClipStore
from facecodec.training.enhance_data import default_cache
from facecodec.training.lpips import LPIPSAlex, psnr

CHECKPOINT = "checkpoint.pt"


def load_config(path: str | Path) -> EnhancerConfig:
    with open(path) as f:
        return EnhancerConfig.from_dict(yaml.safe_load(f) or {})


def build_enhancer(cfg: EnhancerConfig) -> Enhancer:
    n = cfg.net
    return Enhancer(width=n.width, depth=n.depth, expansion=n.expansion)


def export_enhancer(checkpoint: str | Path, dest: str | Path) -> Path:
    """A checkpoint's weights and config -> ``dest``/enhancer.safetensors + config.yaml
    (what :func:`load_enhancer` reads; ~0.25 MB)."""
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    cfg = EnhancerConfig.from_dict(ckpt["config"])
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().clone() for k, v in ckpt["model"].items()}
    save_file(state, str(dest / WEIGHTS), metadata={"step": str(ckpt["step"])})
    with open(dest / "config.yaml", "w") as f:
        yaml.safe_dump(cfg.to_dict(), f, sort_keys=False)
    return dest


def load_enhancer(path: str | Path) -> tuple[Enhancer, EnhancerConfig, int]:
    """(net in eval mode, its config, its training step) from a run's checkpoint or an
    exported folder."""
    path = Path(path)
    if path.is_dir():
        net, raw, step = load_exported(path)
        return net, EnhancerConfig.from_dict(raw), step
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    cfg, state, step = EnhancerConfig.from_dict(ckpt["config"]), ckpt["model"], ckpt["step"]
    net = build_enhancer(cfg)
    net.load_state_dict(state)
    return net.eval(), cfg, int(step)


def enlarge(frames: np.ndarray, side: int = 256) -> np.ndarray:
    """A base layer's decoded frames (T, s, s, 3) -> (T, side, side, 3), bicubic: how the
    receiver brings the base to the output size before the fusion."""
    if frames.shape[1] == side:
        return np.asarray(frames)
    return np.stack([cv2.resize(np.asarray(f), (side, side), interpolation=cv2.INTER_CUBIC)
                     for f in frames])


def to_tensor(images: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0


@dataclass
class CachedClip:
    """One clip of the enhancement cache: memory-mapped pictures and the layers' info."""

    name: str
    folder: Path
    frames: int
    layers: dict[str, dict[str, Any]]
    anim_steady_kbps: float

    maps: dict[str, np.ndarray] = field(default_factory=dict)
    """The pictures' memory maps, opened once (a training step reads 8 crops)."""

    def _map(self, stem: str) -> np.ndarray:
        if stem not in self.maps:
            self.maps[stem] = np.load(self.folder / f"{stem}.npy", mmap_mode="r")
        return self.maps[stem]

    def anim(self) -> np.ndarray:
        return self._map("anim")

    def base(self, layer: str) -> np.ndarray:
        return self._map(layer)


def cached_clips(cache: Path, names: list[str]) -> list[CachedClip]:
    out = []
    for name in names:
        info_path = cache / name / "info.json"
        if not info_path.is_file():
            continue
        info = json.loads(info_path.read_text())
        out.append(CachedClip(name, cache / name, int(info["frames"]), info["layers"],
                              float(info["anim_steady_kbps"])))
    return out


class EnhanceTrainer:
    def __init__(self, cfg: EnhancerConfig, out: Path):
        self.cfg, self.out = cfg, Path(out)
        torch.set_num_threads(cfg.run.threads)
        cv2.setNumThreads(1)
        if cfg.data.crop % 16:
            raise InputError(f"data.crop must be a multiple of 16, got {cfg.data.crop}")
        self.store = ClipStore(resolve_data_root(cfg.data.root), 256)
        cache = Path(cfg.data.cache).expanduser() if cfg.data.cache else default_cache()
        self.train = cached_clips(cache, [c.name for c in self.store.split("train")])
        self.val = cached_clips(cache, [c.name for c in self.store.split("val")])
        if not self.train:
            raise InputError(f"{cache}: no training clip built (run "
                             "`facecodec enhance-data` first)")
        torch.manual_seed(cfg.seed)
        self.net = build_enhancer(cfg)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.optim.lr)
        self.lpips = LPIPSAlex.pretrained()
        self.step = 0
        self._clips = {c.name: c for c in self.store.clips}

    # ------------------------------------------------------------ samples
    def original(self, name: str, idx: list[int]) -> np.ndarray:
        return self.store.frames(self._clips[name], idx)

    def batch(self, step: int) -> dict[str, Tensor]:
        """The crops of ``step``: a function of (seed, step) only."""
        dc = self.cfg.data
        rng = np.random.default_rng([self.cfg.seed, step])
        anim, base, orig, side, crf = [], [], [], [], []
        for _ in range(dc.batch):
            clip = self.train[int(rng.integers(len(self.train)))]
            t = int(rng.integers(clip.frames))
            layer = sorted(clip.layers)[int(rng.integers(len(clip.layers)))]
            y0, x0 = (2 * int(v) for v in rng.integers(0, (256 - dc.crop) // 2 + 1, size=2))
            window = (slice(y0, y0 + dc.crop), slice(x0, x0 + dc.crop))
            pics = [np.asarray(clip.anim()[t]), enlarge(clip.base(layer)[t:t + 1])[0],
                    self.original(clip.name, [t])[0]]
            pics = [p[window] for p in pics]
            if dc.flip and rng.random() < 0.5:
                pics = [p[:, ::-1] for p in pics]
            for dest, p in zip((anim, base, orig), pics, strict=True):
                dest.append(p)
            side.append(clip.layers[layer]["side"])
            crf.append(clip.layers[layer]["crf"])
        return {"anim": to_tensor(np.stack(anim)), "base": to_tensor(np.stack(base)),
                "orig": to_tensor(np.stack(orig)), "side": torch.tensor(side),
                "crf": torch.tensor(crf)}

    # ------------------------------------------------------------ steps
    def lr_at(self, step: int) -> float:
        oc = self.cfg.optim
        return oc.lr * 0.1 ** sum(step >= m for m in oc.milestones)

    def train_step(self) -> dict[str, float]:
        b = self.batch(self.step)
        for g in self.opt.param_groups:
            g["lr"] = self.lr_at(self.step)
        self.net.train()
        out = self.net(b["anim"], b["base"], b["side"], b["crf"])
        lc = self.cfg.losses
        l1 = (out - b["orig"]).abs().mean()
        lp = self.lpips(out, b["orig"]).mean()
        loss = lc.l1 * l1 + lc.lpips * lp
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.step += 1
        return {"loss": loss.item(), "l1": l1.item(), "lpips": lp.item()}

    @torch.no_grad()
    def validate(self) -> dict[str, Any]:
        """LPIPS-alex and PSNR of the base alone, the animation alone and the fusion, per
        base layer, on every ``val_stride``-th frame of the first ``val_clips`` val clips."""
        rc = self.cfg.run
        self.net.eval()
        sums: dict[str, dict[str, list[float]]] = {}
        for clip in self.val[: rc.val_clips]:
            idx = list(range(0, clip.frames, rc.val_stride))
            orig = to_tensor(self.original(clip.name, idx))
            anim = to_tensor(np.asarray(clip.anim()[idx]))
            rows = {"anim": anim}
            for layer, info in sorted(clip.layers.items()):
                base = to_tensor(enlarge(np.asarray(clip.base(layer)[idx])))
                n = len(idx)
                rows[layer] = base
                rows[f"fused_{layer}"] = self.net(anim, base, torch.full((n,), info["side"]),
                                                  torch.full((n,), info["crf"]))
            for key, pics in rows.items():
                acc = sums.setdefault(key, {"lpips": [], "psnr": []})
                acc["lpips"] += self.lpips(pics, orig).tolist()
                acc["psnr"] += psnr(pics, orig).tolist()
        return {k: {m: float(np.mean(v)) for m, v in acc.items()} for k, acc in sums.items()}

    # ------------------------------------------------------------ checkpoints
    def save(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        tmp = self.out / (CHECKPOINT + ".tmp")
        torch.save({"step": self.step, "config": self.cfg.to_dict(),
                    "model": self.net.state_dict(), "opt": self.opt.state_dict()}, tmp)
        tmp.replace(self.out / CHECKPOINT)

    def resume(self) -> bool:
        path = self.out / CHECKPOINT
        if not path.is_file():
            return False
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        if ckpt["config"] != self.cfg.to_dict():
            raise InputError(f"{path}: trained with another config; use another --out "
                             "or the config stored in the checkpoint")
        self.net.load_state_dict(ckpt["model"])
        self.opt.load_state_dict(ckpt["opt"])
        self.step = int(ckpt["step"])
        return True

    def log(self, record: dict[str, Any]) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def run(self, say: Callable[[str], None] = print, progress: bool = True) -> None:
        if self.resume():
            say(f"resumed {self.out / CHECKPOINT} at step {self.step}")
        rc, total = self.cfg.run, self.cfg.optim.steps
        last_save = time.monotonic()
        bar = tqdm(total=total, initial=self.step, unit="step", disable=not progress)
        running: list[dict[str, float]] = []
        while self.step < total:
            start = time.perf_counter()
            running.append(self.train_step())
            bar.update(1)
            bar.set_postfix(loss=f"{running[-1]['loss']:.4f}")
            if self.step % rc.log_every == 0:
                self.log({"step": self.step, "time": time.time(),
                          "s_per_step": time.perf_counter() - start,
                          **{k: float(np.mean([r[k] for r in running])) for k in running[0]}})
                running = []
            if self.step % rc.validate_every == 0 or self.step == total:
                self.log({"step": self.step, "val": self.validate()})
                self.save()
                last_save = time.monotonic()
            elif time.monotonic() - last_save > 60 * rc.checkpoint_minutes:
                self.save()
                last_save = time.monotonic()
        bar.close()
