"""Training checkpoint -> ``models/<name>/`` (sender.safetensors, receiver.safetensors,
config.yaml, MODEL_CARD.md), the files facecodec/models/registry.py ``load_model`` reads.

A checkpoint's ``config`` and a model's ``config.yaml`` keep the plain nested form
(:meth:`facecodec.config.Config.to_dict`), read back with ``Config.from_dict``."""

from __future__ import annotations

import datetime
import json
from dataclasses import replace
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file

from facecodec.config import Config, ConfigError
from facecodec.errors import InputError
from facecodec.models.layout import KeypointLayout
from facecodec.models.profile import network_table
from facecodec.models.registry import build_model
from facecodec.training.config import with_overrides


def _save(module: torch.nn.Module, path: Path, meta: dict[str, str]) -> None:
    state = {k: v.detach().contiguous().clone() for k, v in module.state_dict().items()}
    # safetensors 0.8 writes an unreadable header for no tensors with an empty metadata
    # dict (a sender without a network, e.g. the nth family's): pass None then
    save_file(state, str(path), metadata=meta or None)


def write_package(model: torch.nn.Module, cfg: Config, dest: str | Path,
                  meta: dict[str, str] | None = None) -> Path:
    """``model``'s sender and receiver weights and ``cfg`` as a model directory
    (models/package.py reads it); ``meta`` goes into both safetensors headers."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    _save(model.sender, dest / "sender.safetensors", meta or {})
    _save(model.receiver, dest / "receiver.safetensors", meta or {})
    with open(dest / "config.yaml", "w") as f:
        yaml.safe_dump(cfg.to_dict(), f, sort_keys=False)
    return dest


def export_model(checkpoint: str | Path, dest: str | Path | None = None,
                 name: str | None = None, inference: list[str] | None = None) -> Path:
    """``dest`` defaults to models/<name>; ``inference``: "key=value" settings of the
    config's ``inference`` section (the receiver's, e.g. ``pose_temperature=0.0015``): they
    do not touch the weights, so a checkpoint saved before they were chosen can still ship
    with them."""
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    try:
        cfg = Config.from_dict(ckpt["config"])
    except ConfigError as e:  # not the --inference items' fault: those are applied below
        raise InputError(f"{checkpoint}: {e}") from None
    cfg = with_overrides(replace(cfg, name=name or cfg.name),
                         [f"inference.{item}" for item in inference or []])
    model = build_model(cfg)
    model.load_state_dict(ckpt["model"])
    model.eval()
    meta = {"family": cfg.family, "name": cfg.name, "step": str(ckpt["step"])}
    dest = write_package(model, cfg, dest or f"models/{cfg.name}", meta)
    log = Path(checkpoint).with_name("log.jsonl")
    (dest / "MODEL_CARD.md").write_text(model_card(model, cfg, ckpt, read_run_log(log)))
    return dest


def read_run_log(path: Path) -> list[dict]:
    """A run's log records; a fine-tune's (``train --init-from``) are preceded by those of
    the run it started from, up to its start, so a card tells the whole history."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a line cut by a crash: the rest still tells the story
    init = next((r for r in out if r.get("kind") == "init"), None)
    if init is not None:
        parent = Path(init["from"]).with_name("log.jsonl")
        before = [r for r in read_run_log(parent) if r.get("step", 0) <= init["step"]]
        out = before + out
    return out


def training_summary(log: list[dict], step: int, size: int | None = None
                     ) -> tuple[str, str]:
    """(CPU-hours line, validation-curve table) from a run's log.jsonl, up to ``step``.
    ``size``: the validation frame size after a fine-tune's start (its ``init`` record).

    CPU time is the logged seconds per step times the steps they cover, times the
    processes (``world_size``) and torch threads of the run: what the run cost this CPU."""
    train = [r for r in log if r.get("kind") == "train" and r["step"] <= step]
    secs, prev = 0.0, 0
    for r in train:
        secs += r["s_per_step"] * (r["step"] - prev)
        prev = r["step"]
    lines, validated = [], False
    for r in log:
        if r.get("step", 0) > step:
            continue
        if r.get("kind") == "val" and "lpips" in r:
            validated = True
            lines.append(f"| {r['step']} | {r['lpips']:.4f} | {r['psnr']:.2f} | "
                         f"{r['held_lpips']:.4f} | {r['held_psnr']:.2f} |")
        elif r.get("kind") == "init":
            lines.append(f"| {r['step']} | fine-tune from `{r['from']}`; below: validated at "
                         f"{size}x{size} | | | |")
    rows = "\n".join(lines) if validated else ""
    table = ("| step | LPIPS-alex | PSNR dB | held frame LPIPS | held frame PSNR dB |\n"
             "|---:|---:|---:|---:|---:|\n" + rows) if rows else "no validation recorded"
    return f"{secs / 3600:.2f} hours of wall time at {train[-1]['s_per_step'] if train else 0}"\
        " s/step (last)" if train else "not recorded", table


def model_card(model: torch.nn.Module, cfg: Config, ckpt: dict, log: list[dict] | None = None
               ) -> str:
    layout = KeypointLayout.from_config(cfg.model)
    res = cfg.data.resolution
    shown = cfg.data.output_resolution or res
    cpu, curve = training_summary(log or [], ckpt["step"], shown)
    fres, decoder = cfg.model.feature_res, cfg.model.decoder
    maps = "; eye and mouth part maps from the landmarks" if decoder.part_maps else ""
    world = ckpt.get("world_size", 1)
    rows = "\n".join(f"| {n} | {p:,} | {mb:.2f} |" for n, p, mb in network_table(model))
    val = ckpt.get("last_val") or {}
    val_text = json.dumps({k: round(v, 4) for k, v in val.items()}) if val else "none recorded"
    if cfg.family == "nth":
        nth = cfg.model.nth
        drawing = (f"resolution {res}x{res}, every pixel drawn from a {nth.sketch_sigma:g}-px "
                   f"landmark sketch; embedding {nth.embed_dim}, widths {nth.base}-"
                   f"{nth.max_channels}, bottleneck {res >> nth.down_blocks}x"
                   f"{res >> nth.down_blocks}")
        papers = ("Zakharov et al. 2019 (few-shot neural talking heads: embedder, AdaIN "
                  "generator, projection discriminator, meta-learning), CPU-sized, "
                  "written from the paper's summary (docs/training.md)")
    else:
        drawing = (f"resolution {res}x{res}, motion at {fres}x{fres}; pixel blend "
                   f"{decoder.pixel_blend},\n  pixel warp {decoder.pixel_warp}{maps}; losses "
                   f"at {shown}x{shown}")
        papers = ("Oquab et al. 2022 (Frontalizer, mobile variant, appendix 6.1) and the "
                  "First\nOrder Model (Siarohin et al. 2019), written from the papers")
    return f"""# {cfg.name}

- family: `{cfg.family}`; per-frame values: {', '.join(layout.streams)}
  (supervised landmarks {33 * layout.sup}, irises {2 * layout.iris}, unsupervised keypoints
  {layout.unsup}, Jacobians {layout.jacobians}, expression code {layout.expr_dim})
- {drawing}
- trained {ckpt['step']} steps (batch {cfg.optim.batch_size} x {world}
  processes), sampling `{cfg.data.strategy}`, exported
  {datetime.date.today().isoformat()}
- training cost: {cpu}, {cfg.training.threads} torch thread(s) x {world} process(es)
- last validation (fixed val samples; `held_*` = the first source frame held, the zero-bit
  baseline): {val_text}

## Validation curve

Fixed samples of the val clips (people not in the train split), at the training
resolution; "held frame" is the zero-bit baseline (the first source frame shown for every
frame), which LPIPS flatters on talking heads. Landmark error and full-clip numbers come
from `facecodec eval` (docs/EVAL.md).

{curve}

## Networks

| network | parameters | MB (fp32) |
|---|---|---|
{rows}

Architecture: {papers}; config.yaml holds every
hyper-parameter. Training data: the project's face-tube cache (talking-head clips used only
for training and evaluation; see shared/data/README.md for their provenance and rights).
Intended use: the facecodec talking-face codec (sender: sender.safetensors; receiver:
receiver.safetensors). Not for impersonation: a receiver renders whatever identity its
source frames show.
"""
