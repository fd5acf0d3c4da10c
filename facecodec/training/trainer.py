"""The training loop: ``facecodec train --config configs/<name>.yaml``.

Single process or ``torchrun --nproc_per_node N`` (DDP, gloo on CPU) without changes.
Resumable bit for bit: a checkpoint holds models, optimizers, schedulers, the step, every
rank's torch / numpy / python RNG state, and the sampler position (samples are a pure
function of their number, see facecodec/training/data.py). Optimizer: Adam (0.5, 0.99),
lr 2e-4, divided by 10 at the config's milestones (Oquab et al. section 3.3, "Losses
parameters": 60k and 90k of 100k steps; a CPU run puts them at the same fractions of its
budget).
"""

from __future__ import annotations

import bisect
import json
import os
import random
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from facecodec.config import Config
from facecodec.errors import InputError
from facecodec.models.base import FaceAnimationModel
from facecodec.models.layout import KeypointLayout
from facecodec.models.registry import (
    FAMILIES,
    build_model,
    is_part_map_key,
    load_adding_part_maps,
)
from facecodec.training.adversary import build_adversary
from facecodec.training.config import data_root, load_config, out_dir
from facecodec.training.data import (
    ClipStore,
    FrameSampleDataset,
    StepSampler,
    mean_frontal_layout,
    to_tensors,
)
from facecodec.training.objective import GeneratorObjective, unwrap
from facecodec.training.validation import Validator

CHECKPOINT = "checkpoint.pt"


# ---------------------------------------------------------------- distributed, RNG, seeds
def init_distributed() -> tuple[int, int]:
    """(rank, world size); joins the gloo process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def rng_state() -> dict[str, Any]:
    # numpy's legacy global RNG is saved too: nothing of ours draws from it, but a library may
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),  # noqa: NPY002
            "python": random.getstate()}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    random.setstate(state["python"])


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002
    random.seed(seed)


def reference_init(cfg: Config, store: ClipStore) -> Tensor | None:
    """p_r init (section 3.3): mean frontal landmark layout + unsupervised points N(0, s^2)."""
    if not FAMILIES[cfg.family].uses_reference_init:
        return None
    layout = KeypointLayout.from_config(cfg.model)
    parts = []
    if layout.num_landmarks:
        mean = mean_frontal_layout(store, "train", iris=layout.iris)
        parts.append(torch.from_numpy(mean[: 33 if layout.sup else 0].copy()))
        if layout.iris:
            parts.append(torch.from_numpy(mean[-2:].copy()))
    if layout.unsup:
        gen = torch.Generator().manual_seed(cfg.seed)
        parts.append(torch.randn(layout.unsup, 2, generator=gen) * cfg.model.unsup_init_std)
    return torch.cat(parts).float()


# ---------------------------------------------------------------- the trainer
class Trainer:
    def __init__(self, cfg: Config, out: Path | None = None):
        self.cfg = cfg
        self.rank, self.world = init_distributed()
        self.out = Path(out) if out is not None else out_dir(cfg)
        tc = cfg.training
        torch.set_num_threads(tc.threads)
        # before any fork: a data-loader worker forked while OpenCV's thread pool exists
        # deadlocks in its first cv2 call (seen: cv2.setNumThreads in the worker, on the
        # second run in one process). Without a pool the workers inherit serial OpenCV;
        # the main process's cv2 work (validation crops) is negligible.
        cv2.setNumThreads(1)
        seed = cfg.seed
        seed_everything(seed)  # identical init on every rank
        dc = cfg.data
        self.store = ClipStore(data_root(cfg), dc.output_resolution or dc.resolution)
        self.model: FaceAnimationModel = build_model(cfg, reference_init(cfg, self.store))
        self.objective: nn.Module = GeneratorObjective(self.model, cfg.losses)
        self.gan_weight = cfg.losses.gan
        self.disc: nn.Module | None = None
        self.adversary = None
        if self.gan_weight:
            self.adversary = build_adversary(cfg, self.model.discriminator,
                                             num_videos=len(self.store.split("train")))
            self.disc = self.adversary.disc
        if tc.channels_last:
            self.model.to(memory_format=torch.channels_last)
        oc = cfg.optim
        self.opt_g = torch.optim.Adam(self._generator_groups(), lr=oc.lr_generator,
                                      betas=oc.betas)
        self.sched_g = torch.optim.lr_scheduler.MultiStepLR(self.opt_g, list(oc.milestones),
                                                            oc.gamma)
        if self.disc is not None:
            self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=oc.lr_discriminator,
                                          betas=oc.betas)
            self.sched_d = torch.optim.lr_scheduler.MultiStepLR(self.opt_d,
                                                                list(oc.milestones), oc.gamma)
        if self.world > 1:
            unused = tc.find_unused_parameters
            self.objective = nn.parallel.DistributedDataParallel(
                self.objective, find_unused_parameters=unused)
            if self.disc is not None:
                self.disc = nn.parallel.DistributedDataParallel(self.disc)
                self.adversary.disc = self.disc
        # after the model: training randomness differs per rank, init did not
        seed_everything(seed + 1 + self.rank)
        self.step = 0
        self.last_val: dict[str, float] = {}
        # its own store: the loader's workers should not inherit the val tubes' memmaps
        self.validator = Validator(cfg, ClipStore(self.store.root, self.store.resolution),
                                   self.out) if self.rank == 0 else None

    def _generator_groups(self) -> list[dict[str, Any]]:
        """The generator's parameters, the decoder's part-map convolutions (if any) in a
        second group at ``optim.lr_new`` times the rate. The first group keeps the order
        of ``model.parameters()`` without them: a checkpoint saved without part maps has
        the same optimiser state indices (``_load_adding_part_maps``)."""
        named = list(self.model.named_parameters())
        groups = [{"params": [p for n, p in named if not is_part_map_key(n)]}]
        new = [p for n, p in named if is_part_map_key(n)]
        if new:
            oc = self.cfg.optim
            groups.append({"params": new, "lr": oc.lr_generator * oc.lr_new})
        return groups

    def _base_lrs(self) -> list[float]:
        """Each generator group's learning rate before any milestone."""
        oc = self.cfg.optim
        return [oc.lr_generator, oc.lr_generator * oc.lr_new][: len(self.opt_g.param_groups)]

    # ------------------------------------------------------------ checkpoints
    def state(self) -> dict[str, Any]:
        states = [None] * self.world
        if self.world > 1:
            dist.all_gather_object(states, rng_state())
        else:
            states = [rng_state()]
        # the config as a plain dict: what every checkpoint has held (training/export.py)
        ckpt = {"step": self.step, "config": self.cfg.to_dict(), "world_size": self.world,
                "model": self.model.state_dict(), "opt_g": self.opt_g.state_dict(),
                "sched_g": self.sched_g.state_dict(), "rng": states,
                "sampler": {"next_step": self.step}, "last_val": self.last_val}
        if self.disc is not None:
            ckpt.update(disc=unwrap(self.disc).state_dict(), opt_d=self.opt_d.state_dict(),
                        sched_d=self.sched_d.state_dict())
        return ckpt

    def save(self) -> None:
        ckpt = self.state()  # collective under DDP: every rank calls it
        if self.rank != 0:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        tmp = self.out / (CHECKPOINT + ".tmp")
        torch.save(ckpt, tmp)
        tmp.replace(self.out / CHECKPOINT)

    def load(self, path: Path, init: bool = False) -> None:
        """Resume from ``path`` (``init``: start a fine-tune from it, see :func:`train`)."""
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        added: list[str] = []
        if init:
            added = load_adding_part_maps(self.model, ckpt["model"], str(path))
        else:
            self.model.load_state_dict(ckpt["model"])
        if added:
            self._load_adding_part_maps(ckpt, added)
        else:
            self.opt_g.load_state_dict(ckpt["opt_g"])
            self.sched_g.load_state_dict(ckpt["sched_g"])
        if self.disc is not None:
            if "disc" not in ckpt:
                raise ValueError(f"{path} has no discriminator but the config trains one")
            unwrap(self.disc).load_state_dict(ckpt["disc"])
            self.opt_d.load_state_dict(ckpt["opt_d"])
            self.sched_d.load_state_dict(ckpt["sched_d"])
        self.step = int(ckpt["sampler"]["next_step"])
        self.last_val = ckpt.get("last_val", {})
        states = ckpt["rng"]
        # same world size: each rank continues its own streams; otherwise rank 0's
        set_rng_state(states[self.rank] if len(states) == self.world else states[0])
        if self.rank == 0:
            self._trim_log(self.step)
        self._follow_config_schedule(force=bool(added))

    def _load_adding_part_maps(self, ckpt: dict[str, Any], added: list[str]) -> None:
        """The optimiser and schedule of a checkpoint saved without the part maps, whose
        parameters ``added`` start at zero here: its Adam state is the first group's (same
        parameters, same order: ``_generator_groups``), the new ones start without one."""
        state = ckpt["opt_g"]
        ours = self.opt_g.state_dict()["param_groups"]
        n_old = sum(len(g["params"]) for g in state["param_groups"])
        if len(state["param_groups"]) != 1 or len(ours) != 2 or n_old != len(ours[0]["params"]):
            raise InputError(f"optimiser state of {len(state['param_groups'])} group(s) and "
                             f"{n_old} parameters does not fit this model without {added}")
        self.opt_g.load_state_dict({"state": state["state"],
                                    "param_groups": [state["param_groups"][0], ours[1]]})
        sched = dict(ckpt["sched_g"])
        # one rate per group; _follow_config_schedule sets them from the config
        sched["base_lrs"] = self._base_lrs()
        sched["_last_lr"] = [group["lr"] for group in self.opt_g.param_groups]
        self.sched_g.load_state_dict(sched)
        for group, base in zip(self.opt_g.param_groups, self._base_lrs(), strict=True):
            group["initial_lr"] = base

    def _follow_config_schedule(self, force: bool = False) -> None:
        """A resumed run keeps the checkpoint's learning rate unless the config now puts
        the decay steps elsewhere: then the config's milestones hold from this step on
        (lr = base * gamma ** milestones passed). This is how a run's schedule is fitted
        to the CPU budget it turned out to have; an unchanged config resumes bit for bit.
        ``force``: the config's rates in any case (a fine-tune that added layers)."""
        oc = self.cfg.optim
        want = sorted(oc.milestones)
        pairs = [(self.sched_g, self._base_lrs())]
        if self.disc is not None:
            pairs.append((self.sched_d, [oc.lr_discriminator]))
        if not force and all(sorted(sched.milestones.elements()) == want for sched, _ in pairs):
            return
        decays = bisect.bisect_right(want, self.sched_g.last_epoch)
        for sched, bases in pairs:
            sched.milestones = Counter(want)
            lrs = [base * oc.gamma ** decays for base in bases]
            for group, lr in zip(sched.optimizer.param_groups, lrs, strict=True):
                group["lr"] = lr
            sched._last_lr = lrs  # get_last_lr()
        lr = self.sched_g.get_last_lr()[0]
        if self.rank == 0:
            print(f"lr schedule from the config: milestones {want}, generator lr {lr:g} "
                  f"from step {self.step}", flush=True)
        self.log({"kind": "schedule", "step": self.step, "milestones": want, "lr": lr})

    def _trim_log(self, step: int) -> None:
        """Drop log records of steps after the checkpoint's: a run stopped between two
        checkpoints logged steps that the resumed run will log again."""
        path = self.out / "log.jsonl"
        if not path.is_file():
            return
        lines = path.read_text().splitlines()
        kept = [x for x in lines if not x.strip() or json.loads(x).get("step", 0) <= step]
        if len(kept) != len(lines):
            path.write_text("".join(x + "\n" for x in kept))

    # ------------------------------------------------------------ one step
    def train_step(self, batch: dict[str, Tensor]) -> dict[str, float]:
        total, terms, out = self.objective(batch)
        if self.adversary is not None:
            disc = unwrap(self.disc)  # G step: D's gradients are not wanted
            disc.requires_grad_(False)
            adv = self.adversary.generator_terms(batch, out)
            terms.update(adv)
            for v in adv.values():
                total = total + v
            disc.requires_grad_(True)
        logs = {k: float(v.detach()) for k, v in terms.items()}
        self.opt_g.zero_grad(set_to_none=True)
        total.backward()
        self.opt_g.step()
        self.sched_g.step()
        if self.adversary is not None:
            d_terms = self.adversary.discriminator_loss(batch, out)
            d_loss = sum(d_terms.values())
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            self.opt_d.step()
            self.sched_d.step()
            logs.update({k: float(v.detach()) for k, v in d_terms.items()})
        logs["total"] = float(total.detach())
        return logs

    # ------------------------------------------------------------ the loop
    def loader(self) -> DataLoader:
        ds = FrameSampleDataset(self.store, self.cfg.data, "train", self.cfg.seed, augment=True)
        sampler = StepSampler(self.cfg.optim.batch_size, self.step, self.rank, self.world)
        workers = self.cfg.data.num_workers
        # own generator: creating the iterator must not consume the global RNG (resume)
        return DataLoader(ds, batch_sampler=sampler, num_workers=workers,
                          persistent_workers=workers > 0, worker_init_fn=_worker_init,
                          generator=torch.Generator().manual_seed(0),
                          prefetch_factor=2 if workers else None)

    def log(self, record: dict[str, Any]) -> None:
        if self.rank != 0:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def _save_or_stop(self, last_save: float, final: bool) -> tuple[bool, bool]:
        """(save a checkpoint now, stop after it): every few minutes, at the last step, and
        when a stop was asked for (SIGTERM / SIGINT on rank 0)."""
        minutes = self.cfg.training.checkpoint_minutes
        stop = self._stop_asked
        save = final or stop or (time.monotonic() - last_save) >= 60.0 * minutes
        if self.world > 1:  # rank 0 decides for everyone (the save is collective)
            t = torch.tensor([int(save), int(stop)])
            dist.broadcast(t, 0)
            save, stop = bool(t[0]), bool(t[1])
        return save, stop

    def _ask_stop(self, signum: int, _frame: object) -> None:
        if self._stop_asked:  # a second signal: stop now, without the checkpoint
            raise KeyboardInterrupt
        self._stop_asked = True
        print(f"\n{signal.Signals(signum).name}: stopping after this step's checkpoint "
              "(send it again to stop at once)", file=sys.stderr, flush=True)

    def fit(self, max_steps: int | None = None) -> Path:
        tc, vc = self.cfg.training, self.cfg.validation
        max_steps = max_steps if max_steps is not None else self.cfg.optim.max_steps
        log_every, val_every = tc.log_every, vc.every
        self.model.train()
        bar = tqdm(total=max_steps, initial=self.step, unit="step", dynamic_ncols=True,
                   disable=self.rank != 0 or not tc.progress)
        sums: dict[str, float] = {}
        count, t_log, last_save = 0, time.monotonic(), time.monotonic()
        batches = iter(self.loader())
        # a stop asked for between checkpoints (kill -TERM, Ctrl-C) saves first: nothing
        # trained is lost, and the run resumes from that step
        self._stop_asked = False
        main = threading.current_thread() is threading.main_thread()  # else no handlers
        handlers = {sig: signal.signal(sig, self._ask_stop)
                    for sig in (signal.SIGTERM, signal.SIGINT) if main}
        try:
            while self.step < max_steps:
                raw = next(batches)
                batch = to_tensors(raw)
                logs = self.train_step(batch)
                logs["rotated"] = float(raw["rotated"].float().mean())
                self.step += 1
                for k, v in logs.items():
                    sums[k] = sums.get(k, 0.0) + v
                count += 1
                bar.update(1)
                bar.set_postfix(loss=f"{logs['total']:.3f}")
                if self.step % log_every == 0 or self.step == max_steps:
                    dt = (time.monotonic() - t_log) / count
                    self.log({"kind": "train", "step": self.step, "s_per_step": round(dt, 4),
                              "lr": self.sched_g.get_last_lr()[0],
                              **{k: v / count for k, v in sums.items()}})
                    sums, count, t_log = {}, 0, time.monotonic()
                if self.validator is not None and (self.step % val_every == 0
                                                   or self.step == max_steps):
                    self.last_val = self.validator.run(self.model, self.step)
                    self.log({"kind": "val", "step": self.step, **self.last_val})
                    self.model.train()
                save, stop = self._save_or_stop(last_save, self.step == max_steps)
                if save:
                    self.save()
                    last_save = time.monotonic()
                if stop:
                    break
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
        bar.close()
        if self.world > 1:
            self._check_replicas()
        return self.out / CHECKPOINT

    def _check_replicas(self) -> None:
        """DDP must leave identical parameters on every rank (a desync would silently train
        different models). Buffers are not compared: batch-norm running statistics differ
        after each rank's last forward until DDP broadcasts rank 0's at the next one."""
        with torch.no_grad():
            sums = torch.stack([p.double().sum() for p in self.model.parameters()])
        gathered = [torch.zeros_like(sums) for _ in range(self.world)]
        dist.all_gather(gathered, sums)
        in_sync = all(torch.equal(gathered[0], g) for g in gathered[1:])
        self.log({"kind": "ddp", "step": self.step, "world_size": self.world,
                  "replicas_in_sync": in_sync})
        if not in_sync:
            raise RuntimeError("DDP replicas diverged")


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)
    # stopping is the main process's job (Trainer._ask_stop): a worker killed by Ctrl-C
    # (sent to the whole process group) or `pkill -f` would end the run before its save
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)


def train(config: str | Path | None, overrides: list[str] | None = None,
          out: Path | None = None, max_steps: int | None = None, resume: bool = True,
          init_from: Path | None = None) -> Path:
    """Build, optionally resume from ``<out>/checkpoint.pt``, train; returns the checkpoint.

    ``init_from``: a run directory without a checkpoint of its own starts from this one
    (another run's: weights, optimiser, step; the config's milestones apply), e.g. a
    fine-tune at a larger ``data.output_resolution``. Ignored once the run has its own.
    A checkpoint saved without the decoder's part maps starts a run with them: their
    layers start at zero (the same pictures), the config's learning rates apply; any
    other difference in the weights is an error."""
    cfg = load_config(config, overrides)
    trainer = Trainer(cfg, out)
    ckpt = trainer.out / CHECKPOINT
    if resume and ckpt.exists():
        trainer.load(ckpt)
    elif init_from is not None:
        trainer.load(Path(init_from), init=True)
        trainer.log({"kind": "init", "step": trainer.step, "from": str(init_from)})
    try:
        return trainer.fit(max_steps)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
